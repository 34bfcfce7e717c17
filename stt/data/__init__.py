"""Data: manifests, corpus importers, the synthetic corpus and (later) datasets and samplers."""
