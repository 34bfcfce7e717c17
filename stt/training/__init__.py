"""Training: configuration, the loop, checkpoints, stopping rules, logging."""
