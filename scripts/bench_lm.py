#!/usr/bin/env python
"""Language models side by side: dev WER vs binary size vs beam-search speed.

Every LM folder under WORK/lm/ (built by scripts/build_lm.sh) decodes the same model outputs of
every dev split (a seeded sample of at most --max-utterances each, computed once, in one run), at
each (alpha, beta) of a small grid; its best mean WER over the splits (equal weight) is reported
with the per-split WERs and the decoding speed (audio seconds per decoding second, acoustic model
excluded: that cost is the same for every LM). Greedy decoding is the baseline row.

    .venv/bin/python scripts/bench_lm.py --checkpoint CKPT [--work data_cache]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_average, write_results  # noqa: E402

from stt.checkpoint import read_model  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.decoding import DecoderConfig, build_decoder  # noqa: E402
from stt.inference import infer_log_probs, load_many  # noqa: E402
from stt.metrics import error_counts  # noqa: E402

DEV_SETS = ("librispeech", "speechocean", "ljspeech", "an4", "fsdd", "synth")
SIZE_LIMIT_MB = 30.0


def decode_all(vocab, config: DecoderConfig, sets: dict, frame_seconds: float) -> dict:
    decoder = build_decoder(vocab, config)
    try:
        wers, seconds, audio = {}, 0.0, 0.0
        for name, (refs, log_probs, duration) in sets.items():
            start = time.perf_counter()
            results = decoder.decode_batch(log_probs, frame_seconds)
            seconds += time.perf_counter() - start
            audio += duration
            wers[name] = round(error_counts(refs, [r.text for r in results]).wer, 4)
    finally:
        decoder.close()
    mean = sum(wers.values()) / len(wers)
    return {"mean_wer": round(mean, 4), "wer": wers, "decode_rtfx": round(audio / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--work", type=Path, default=Path("data_cache"))
    parser.add_argument("--max-utterances", type=int, default=100)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--beam-width", type=int, default=32)
    args = parser.parse_args()

    model, vocab = read_model(args.checkpoint)
    frame_seconds = model.frame_ms / 1000
    sets = {}
    for name in DEV_SETS:
        utts = read_manifest(args.work / name / "dev.jsonl")
        random.Random(1).shuffle(utts)
        utts = utts[: args.max_utterances]
        log_probs = infer_log_probs(model, load_many([u.audio_filepath for u in utts]), "cpu")
        sets[name] = ([u.text for u in utts], log_probs, sum(u.duration for u in utts))

    rows = [{"lm": "none (greedy)", **decode_all(vocab, DecoderConfig(kind="greedy"), sets,
                                                 frame_seconds)}]  # fmt: skip
    for folder in sorted(p for p in (args.work / "lm").iterdir() if (p / "lm.json").exists()):
        info = json.loads((folder / "lm.json").read_text())
        trials = []
        for alpha, beta in itertools.product(args.alphas, args.betas):
            config = DecoderConfig(
                kind="beam", beam_width=args.beam_width, lm=str(folder / "lm.bin"),
                unigrams=str(folder / "unigrams.txt"), alpha=alpha, beta=beta,
            )  # fmt: skip
            trials.append({"alpha": alpha, "beta": beta, **decode_all(vocab, config, sets,
                                                                      frame_seconds)})  # fmt: skip
            print(folder.name, trials[-1], flush=True)
        best = min(trials, key=lambda t: t["mean_wer"])
        size_mb = (folder / "lm.bin").stat().st_size / 1e6
        rows.append({
            "lm": folder.name, "order": info["order"], "prune": info["prune"],
            "quantize_bits": info.get("quantize_bits"), "size_mb": round(size_mb, 1),
            "vocabulary": info["vocabulary"], "ngrams": info["ngrams"],
            "under_size_limit": size_mb <= SIZE_LIMIT_MB, **best, "trials": trials,
        })  # fmt: skip

    for row in rows:
        size = row.get("size_mb", 0)
        print(f"{row['lm']:>14}: mean WER {100 * row['mean_wer']:5.1f}%  "
              f"size {size:5.1f} MB  decode {row['decode_rtfx']:.0f}x")  # fmt: skip
    write_results("lm", {
        "command": " ".join(["python", "scripts/bench_lm.py", *sys.argv[1:]]),
        "checkpoint": str(args.checkpoint),
        "dev_sets": {n: {"utterances": len(s[0]), "seconds": round(s[2], 1)}
                     for n, s in sets.items()},
        "note": "dev samples (speaker-disjoint dev splits; speechocean762's prompts also occur "
                "in the LM's train transcripts); decode_rtfx excludes the acoustic model",
        "size_limit_mb": SIZE_LIMIT_MB,
        "load_average": load_average(),
        "results": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
