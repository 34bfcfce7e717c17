"""Markdown accuracy tables from committed `stt eval` reports, for MODEL_CARD.md and README.md.

Usage: python scripts/report_tables.py bench/results/default_model/report.json [BEFORE.json]

One row per set: utterances, hours, greedy WER / CER, beam + LM WER (95% bootstrap interval) /
CER; with a second report (the previous model on the same sets), its beam + LM WER beside. The
tables in the docs are pasted from this output, so they say what the reports say.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(figures: dict | None, ci: bool = False) -> str:
    if figures is None:
        return "-"
    text = f"{100 * figures['wer']:.1f} / {100 * figures['cer']:.1f}"
    if ci and figures.get("wer_95ci"):
        low, high = figures["wer_95ci"]
        text = f"{100 * figures['wer']:.1f} ({100 * low:.1f}-{100 * high:.1f}) / "
        text += f"{100 * figures['cer']:.1f}"
    return text


def main() -> int:
    report = json.loads(Path(sys.argv[1]).read_text())
    before = json.loads(Path(sys.argv[2]).read_text()) if len(sys.argv) > 2 else None
    decoders = report["decoders"]
    beam = "beam+lm" if "beam+lm" in decoders else "beam"
    head = "| set | utterances | hours | greedy WER / CER % | beam + LM WER (95% CI) / CER % |"
    rule = "|---|---|---|---|---|"
    if before:
        head += " before: beam + LM WER / CER % |"
        rule += "---|"
    print(head)
    print(rule)
    for name, info in report["sets"].items():
        row = (
            f"| {name} | {info['utterances']} | {info['hours']:.3f} "
            f"| {cell(decoders['greedy']['sets'].get(name))} "
            f"| {cell(decoders[beam]['sets'].get(name), ci=True)} |"
        )
        if before:
            old = before["decoders"].get(beam, {}).get("sets", {}).get(name)
            row += f" {cell(old)} |"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
