#!/usr/bin/env python
"""Decoding speed against accuracy: greedy and beam search at several widths and label cut-offs,
with the model's own LM (or one built here from text), on one or more dev manifests.

All decoders decode the same model outputs (computed once, not timed here), in one run, so the
figures compare like with like. Speed is audio-seconds decoded per wall-second, one utterance
after another in this process (batch 1, as `stt transcribe` of one file decodes), so the
figures add to the forward pass's cost of bench_infer.py. WER is per manifest and pooled: a
setting is chosen on all of them, not on one. Target (issues 4 and 12): beam search with the LM
at >= 100x real time end to end for the shipped model.

    .venv/bin/python scripts/bench_decode.py --checkpoint stt/assets/default/model.pt \\
        --manifest data_cache/librispeech/dev.jsonl data_cache/an4/dev.jsonl ... \\
        [--lm-text TRAIN.jsonl] [--widths 8 16 32] [--token-min-logps -5 -3]
        [--max-utterances 100] [--reference-loop] [--name decode]

Without ``--lm-text`` the LM, unigrams, alpha and beta are the checkpoint's ``decoder.yaml``
(the shipped model's 4-gram); with it, a 3-gram is built from those texts or manifests.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import write_results  # noqa: E402

from stt import beam_search  # noqa: E402
from stt.checkpoint import read_model  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.decoding import DecoderConfig, build_decoder, load_tuned_decoder  # noqa: E402
from stt.inference import InferenceTiming, infer_log_probs, load_many  # noqa: E402
from stt.lm import build_lm  # noqa: E402
from stt.metrics import error_counts  # noqa: E402

TARGET = 100.0
REFERENCE = " (pyctcdecode's loop)"


def lm_settings(args: argparse.Namespace, tmp: Path) -> tuple[dict, str]:
    """The beam decoder's LM settings and a label for them."""
    if not args.lm_text:
        tuned = load_tuned_decoder(args.checkpoint)
        if not tuned.get("lm"):
            sys.exit(
                f"bench_decode: {args.checkpoint} has no decoder.yaml with an LM: give --lm-text"
            )
        keys = ("lm", "unigrams", "alpha", "beta", "beam_prune_logp")
        return {k: tuned[k] for k in keys if tuned.get(k) is not None}, Path(tuned["lm"]).name
    texts = []
    for path in args.lm_text:  # a manifest contributes its transcripts
        if path.suffix == ".jsonl":
            texts.append(tmp / f"{path.stem}.txt")
            texts[-1].write_text("\n".join(u.text for u in read_manifest(path)) + "\n")
        else:
            texts.append(path)
    lm = build_lm(texts, tmp / "lm", order=3, progress=False)
    return {"lm": str(lm.binary), "unigrams": str(lm.unigrams)}, "3-gram"


def decode_all(
    vocab, config: DecoderConfig, sets: dict, frame_seconds: float
) -> tuple[dict, float]:
    """Every set's hypotheses with one decoder, one utterance at a time; the wall seconds."""
    hypotheses, elapsed = {}, 0.0
    with build_decoder(vocab, config, workers=1) as decoder:
        first = next(iter(sets.values()))["log_probs"]
        decoder.decode(first[0], frame_seconds)  # warm the LM's caches
        for name, s in sets.items():
            start = time.perf_counter()
            hypotheses[name] = [decoder.decode(lp, frame_seconds).text for lp in s["log_probs"]]
            elapsed += time.perf_counter() - start
    return hypotheses, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--manifest", required=True, nargs="+", type=Path)
    parser.add_argument("--lm-text", nargs="+", type=Path, help="text files or manifests")
    parser.add_argument("--max-utterances", type=int, default=100, help="per manifest")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--token-min-logps", type=float, nargs="+", default=[-5.0])
    parser.add_argument("--beam-prune-logps", type=float, nargs="+", default=[None],
                        help="default: the checkpoint's decoder.yaml")  # fmt: skip
    parser.add_argument("--reference-loop", action="store_true",
                        help="also time each beam setting on pyctcdecode's own per-frame loop "
                        "(stt.beam_search's fast loop off): the speed-up, same run")  # fmt: skip
    parser.add_argument("--name", default="decode", help="bench/results/NAME.json")
    args = parser.parse_args()

    model, vocab = read_model(args.checkpoint)
    frame_seconds = model.frame_ms / 1000
    sets, forward = {}, InferenceTiming()
    for path in args.manifest:
        utterances = read_manifest(path)[: args.max_utterances]
        waveforms = load_many([u.audio_filepath for u in utterances])
        timing = InferenceTiming()
        sets[f"{path.parent.name}/{path.stem}"] = {
            "refs": [u.text for u in utterances],
            "log_probs": infer_log_probs(model, waveforms, "cpu", timing=timing),
            "seconds": timing.audio_seconds,
        }
        forward.audio_seconds += timing.audio_seconds
        forward.compute_seconds += timing.compute_seconds
    audio_seconds = sum(s["seconds"] for s in sets.values())

    with tempfile.TemporaryDirectory() as tmp:
        lm, lm_label = lm_settings(args, Path(tmp))
        configs = [("greedy", DecoderConfig(kind="greedy"))]
        for width in args.widths:
            for cut in args.token_min_logps:
                for prune in args.beam_prune_logps:
                    label = f"beam{width}+{lm_label} token_min_logp {cut:g}"
                    settings = {**lm, "beam_width": width, "token_min_logp": cut}
                    if prune is not None:
                        label += f" beam_prune_logp {prune:g}"
                        settings["beam_prune_logp"] = prune
                    configs.append((label, DecoderConfig(kind="beam", **settings)))
                    if args.reference_loop:
                        configs.append((label + REFERENCE, configs[-1][1]))
        rows, fast_hypotheses = [], {}
        for label, config in configs:
            reference = label.endswith(REFERENCE)
            with beam_search.pyctcdecode_loop() if reference else contextlib.nullcontext():
                hypotheses, elapsed = decode_all(vocab, config, sets, frame_seconds)
            same = None  # the fast loop's claim: the same search as pyctcdecode's
            if reference:
                same = hypotheses == fast_hypotheses[label[: -len(REFERENCE)]]
                print(f"{label}: same hypotheses as the fast loop: {same}")
            fast_hypotheses[label] = hypotheses
            per_set = {}
            for name, s in sets.items():
                counts = error_counts(s["refs"], hypotheses[name])
                per_set[name] = round(counts.wer, 4)
            pooled = error_counts([r for s in sets.values() for r in s["refs"]],
                                  [h for n in sets for h in hypotheses[n]])  # fmt: skip
            rows.append({
                "decoder": label,
                "beam_width": config.beam_width if config.kind == "beam" else None,
                "token_min_logp": config.token_min_logp if config.kind == "beam" else None,
                "beam_prune_logp": config.beam_prune_logp if config.kind == "beam" else None,
                "lm": lm_label if config.kind == "beam" else None,
                "same_hypotheses_as_fast_loop": same,
                "decode_x_realtime": round(audio_seconds / elapsed, 1),
                "end_to_end_x_realtime": round(
                    audio_seconds / (elapsed + forward.compute_seconds), 1),
                "wer_pooled": round(pooled.wer, 4),
                "wer": per_set,
            })  # fmt: skip
            print(f"{label:>40}: decode {audio_seconds / elapsed:7.0f}x, with the forward pass "
                  f"{rows[-1]['end_to_end_x_realtime']:6.0f}x  WER {100 * pooled.wer:.2f}% "
                  + " ".join(f"{n} {100 * w:.1f}" for n, w in per_set.items()))  # fmt: skip
    path = write_results(
        args.name,
        {
            "benchmark": "decode",
            "command": "python scripts/bench_decode.py " + " ".join(sys.argv[1:]),
            "checkpoint": str(args.checkpoint),
            "manifests": [str(m) for m in args.manifest],
            "utterances": {n: len(s["refs"]) for n, s in sets.items()},
            "audio_seconds": round(audio_seconds, 1),
            "model_forward_x_realtime": round(audio_seconds / forward.compute_seconds, 1),
            "timing": "decode: one utterance at a time, one process (batch 1); end to end adds "
            "the forward pass of the same audio (batched here, so it is a lower bound of a "
            "batch-1 run's cost: scripts/bench_infer.py measures that)",
            "target_beam_lm_x_realtime": TARGET,
            "results": rows,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
