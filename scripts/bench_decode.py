#!/usr/bin/env python
"""Decoding speed: greedy, beam without LM, beam with a 3-gram KenLM at widths 16/32/64.

All decoders decode the same model outputs (computed once, not timed here), in one run, so the
figures compare like with like. Speed is audio-seconds decoded per wall-second on this machine.
Target (issue 4): beam search with LM at >= 100x real time for the shipped model.

    .venv/bin/python scripts/bench_decode.py --checkpoint CKPT --manifest TEST.jsonl \\
        --lm-text TRAIN.jsonl [--max-utterances 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import write_results  # noqa: E402

from stt.checkpoint import read_model  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.decoding import DecoderConfig, build_decoder  # noqa: E402
from stt.inference import InferenceTiming, infer_log_probs, load_many  # noqa: E402
from stt.lm import build_lm  # noqa: E402
from stt.metrics import error_counts  # noqa: E402

TARGET = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument(
        "--lm-text", required=True, nargs="+", type=Path, help="text files or manifests"
    )
    parser.add_argument("--max-utterances", type=int, default=200)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    args = parser.parse_args()

    model, vocab = read_model(args.checkpoint)
    utterances = read_manifest(args.manifest)[: args.max_utterances]
    waveforms = load_many([u.audio_filepath for u in utterances])
    timing = InferenceTiming()
    log_probs = infer_log_probs(model, waveforms, "cpu", timing=timing)
    audio_seconds = timing.audio_seconds
    frame_seconds = model.frame_ms / 1000
    refs = [u.text for u in utterances]

    with tempfile.TemporaryDirectory() as tmp:
        texts = []
        for path in args.lm_text:  # a manifest contributes its transcripts
            if path.suffix == ".jsonl":
                texts.append(Path(tmp) / f"{path.stem}.txt")
                texts[-1].write_text("\n".join(u.text for u in read_manifest(path)) + "\n")
            else:
                texts.append(path)
        lm = build_lm(texts, Path(tmp) / "lm", order=3, progress=False)
        configs = [("greedy", None, DecoderConfig(kind="greedy"))]
        for width in args.widths:
            configs.append((f"beam{width}", width, DecoderConfig(kind="beam", beam_width=width)))
        for width in args.widths:
            configs.append(
                (
                    f"beam{width}+lm3",
                    width,
                    DecoderConfig(
                        kind="beam",
                        beam_width=width,
                        lm=str(lm.binary),
                        unigrams=str(lm.unigrams),
                    ),
                )
            )
        rows = []
        for label, width, cfg in configs:
            with build_decoder(vocab, cfg) as decoder:
                decoder.decode_batch(log_probs[:4], frame_seconds)  # warm the pool and caches
                start = time.perf_counter()
                results = decoder.decode_batch(log_probs, frame_seconds)
                elapsed = time.perf_counter() - start
            counts = error_counts(refs, [r.text for r in results])
            rows.append(
                {
                    "decoder": label,
                    "beam_width": width,
                    "lm": "3-gram" if cfg.lm else None,
                    "x_realtime": round(audio_seconds / elapsed, 1),
                    "wer": round(counts.wer, 4),
                }
            )
            print(
                f"{label:>12}: {audio_seconds / elapsed:8.0f}x real time  "
                f"WER {100 * counts.wer:.2f}%"
            )
    path = write_results(
        "decode",
        {
            "benchmark": "decode",
            "command": "python scripts/bench_decode.py " + " ".join(sys.argv[1:]),
            "checkpoint": str(args.checkpoint),
            "manifest": str(args.manifest),
            "utterances": len(utterances),
            "audio_seconds": round(audio_seconds, 1),
            "model_forward_x_realtime": round(audio_seconds / timing.compute_seconds, 1),
            "target_beam_lm_x_realtime": TARGET,
            "results": rows,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
