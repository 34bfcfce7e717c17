#!/usr/bin/env python
"""Synthesis speed of `stt synth`: audio-seconds made per wall-second on all cores.

Target (issue 2): >= 50x real time on the 2-core development machine. Sentence harvesting is
timed separately (it runs once and is cached); the figure that counts is synthesis proper.

    .venv/bin/python scripts/bench_synth.py [--hours 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import write_results  # noqa: E402

from stt.data.synth import SynthConfig, load_sentences, synthesize_corpus  # noqa: E402
from stt.text import Vocabulary  # noqa: E402

TARGET_X_REALTIME = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.1, help="audio to synthesize")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        cfg = SynthConfig(out_dir=tmp, hours=args.hours, seed=args.seed, progress=False)
        start = time.perf_counter()
        sentences = load_sentences(cfg, Vocabulary.default())
        harvest_s = time.perf_counter() - start

        start = time.perf_counter()
        summary = synthesize_corpus(cfg)
        synth_s = time.perf_counter() - start
        audio_s = sum(summary.hours.values()) * 3600

        start = time.perf_counter()
        rerun = synthesize_corpus(cfg)
        rerun_s = time.perf_counter() - start
    speed = audio_s / synth_s
    results = {
        "benchmark": "synth",
        "command": f"python scripts/bench_synth.py --hours {args.hours}",
        "workers": os.cpu_count(),
        "utterances": summary.made,
        "audio_seconds": round(audio_s, 1),
        "synthesis_wall_seconds": round(synth_s, 2),
        "x_realtime": round(speed, 1),
        "target_x_realtime": TARGET_X_REALTIME,
        "meets_target": speed >= TARGET_X_REALTIME,
        "sentences_available": len(sentences),
        "sentence_harvest_seconds_cached_or_not": round(harvest_s, 2),
        "rerun_wall_seconds": round(rerun_s, 2),
        "rerun_made": rerun.made,
    }
    path = write_results("synth", results)
    print(f"{audio_s:.0f} s of audio in {synth_s:.1f} s: {speed:.0f}x real time -> {path}")


if __name__ == "__main__":
    main()
