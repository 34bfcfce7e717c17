#!/usr/bin/env python
"""Exported models side by side: speed, size, accuracy and parity of PyTorch (fused), TorchScript,
ONNX fp32, ONNX int8 and ONNX int4 (``stt export``), in one run on the same manifest.

* **RTFx, model only** (16 kHz waveforms in memory -> log-probs as numpy), at batch 1 and batch
  16 (consecutive utterances in manifest order, zero-padded), all at ``--threads`` threads
  (torch and onnxruntime intra-op). Backends are interleaved and repeated; each figure is the
  best of ``--repeats`` (interference only ever slows a run down), the median is kept too.
* **WER / CER** of each backend through the same :class:`stt.transcribe.Transcriber` code,
  greedy and with the model's tuned beam search + KenLM (``decoder.yaml``), on the manifest and
  on each ``--wer-manifest`` (int8's cost needs more words than the ten examples hold); for the
  quantised files, the change of beam + LM WER over fp32 with a 95% paired-bootstrap interval,
  on each manifest and on all of them together.
* **Parity** against PyTorch's fused model: the largest log-prob difference on valid frames,
  and the share of frames whose best label agrees.
* **Sizes** of the checkpoint and of each exported file.

    .venv/bin/python scripts/bench_export.py [--checkpoint CKPT] [--manifest M.jsonl]
        [--repeats 5] [--threads 2] [--wer-manifest DEV.jsonl ... [--wer-limit N]]

Writes ``bench/results/export.json`` with the machine's description.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_infer import padded  # noqa: E402  (the same padded batches as bench_infer)
from machine import load_average, write_results  # noqa: E402

from stt.audio import SAMPLE_RATE, load_audio  # noqa: E402
from stt.checkpoint import read_model  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.export import export_model  # noqa: E402
from stt.exported import load_exported  # noqa: E402
from stt.fusion import fuse  # noqa: E402
from stt.metrics import error_counts, paired_bootstrap_change  # noqa: E402
from stt.transcribe import SHIPPED_MODEL, load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("pytorch_fused", "torchscript", "onnx_fp32", "onnx_int8", "onnx_int4")
FILES = {
    "torchscript": "model.ts",
    "onnx_fp32": "model.onnx",
    "onnx_int8": "model.int8.onnx",
    "onnx_int4": "model.int4.onnx",
}


@torch.inference_mode()
def run_model(model, inputs) -> tuple[float, list[np.ndarray]]:
    """Wall seconds of ``model(waveforms, lengths)`` -> numpy over all inputs, and the
    per-utterance valid log-probs."""
    outputs = []
    start = time.perf_counter()
    for waves, lengths in inputs:
        log_probs, out_lengths = model(waves, lengths)
        outputs.append((log_probs.numpy(), out_lengths))
    seconds = time.perf_counter() - start
    valid = [lp[row, : int(n)] for lp, ns in outputs for row, n in enumerate(ns)]
    return seconds, valid


def transcribe_all(model_path: Path, files: list[Path], decoder: dict | None) -> list[str]:
    with load_model(model_path, decoder=decoder) as transcriber:
        return [t.text for _, t in transcriber.transcribe_many(files, progress=False)]


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def transcripts_of(paths: dict[str, Path], files: list[Path]) -> dict:
    """Each backend's transcripts of ``files``, greedy and with beam + LM."""
    return {
        name: {
            decoder: transcribe_all(paths[name], files, settings)
            for decoder, settings in (("greedy", {"kind": "greedy"}), ("beam+lm", None))
        }
        for name in BACKENDS
    }


def accuracy_of(transcripts: dict, refs: list[str]) -> dict:
    """WER/CER (percent) of each backend's transcripts, greedy and beam + LM."""
    accuracy = {}
    for name, by_decoder in transcripts.items():
        accuracy[name] = {}
        for decoder, hyps in by_decoder.items():
            counts = error_counts(refs, hyps)
            accuracy[name][decoder] = {
                "wer": round(100 * counts.wer, 2),
                "cer": round(100 * counts.cer, 2),
            }
    return accuracy


QUANTIZED = ("onnx_int8", "onnx_int4")


def beam_lm_errors(transcripts: dict, refs: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Per utterance, ``(word errors, reference words)`` of the fp32 and quantised files'
    beam + LM transcripts: what :func:`quantization_cost` compares, per manifest or pooled."""
    return {
        name: [
            (c.word_errors, c.words)
            for c in (
                error_counts([r], [h])
                for r, h in zip(refs, transcripts[name]["beam+lm"], strict=True)
            )
        ]
        for name in ("onnx_fp32", *QUANTIZED)
    }


def quantization_cost(errors: dict[str, list[tuple[int, int]]]) -> dict:
    """Beam + LM WER of each quantised file minus the fp32 file's, in points, with its 95%
    paired-bootstrap interval over utterances (:func:`stt.metrics.paired_bootstrap_change`):
    a few dozen utterances move by a word or two either way, which one point can be.
    ``errors``: :func:`beam_lm_errors`."""
    before = [e for e, _ in errors["onnx_fp32"]]
    words = [n for _, n in errors["onnx_fp32"]]
    cost = {}
    for name in QUANTIZED:
        after = [e for e, _ in errors[name]]
        low, high = paired_bootstrap_change(before, after, words)
        change = (sum(after) - sum(before)) / max(sum(words), 1)
        cost[name] = {
            "wer_change_points": round(100 * change, 2),
            "interval_95": [round(100 * low, 2), round(100 * high, 2)],
        }
    return cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--manifest", type=Path, default=ROOT / "examples" / "references.jsonl")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        default="2,1",
        help="comma-separated thread counts; the first is the main one (accuracy, parity)",
    )
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    parser.add_argument(
        "--wer-manifest", type=Path, action="append", default=[], metavar="M.jsonl",
        help="also WER/CER of every backend on this manifest (repeatable; e.g. dev splits: the "
        "ten examples hold ~100 words, where one word is one point)",
    )  # fmt: skip
    parser.add_argument("--wer-limit", type=int, help="only the first N of each --wer-manifest")
    parser.add_argument("--dry-run", action="store_true", help="print, write no results")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(thread_counts[0])

    utterances = read_manifest(args.manifest)[: args.limit]
    files = [Path(u.audio_filepath) for u in utterances]
    refs = [u.text for u in utterances]
    waves = [load_audio(f) for f in files]
    audio_seconds = sum(len(w) for w in waves) / SAMPLE_RATE
    load_before = load_average()

    out = Path(tempfile.mkdtemp(prefix="stt-export-bench-"))
    start = time.perf_counter()
    export_model(args.checkpoint, out, format="all", quantize="int8,int4")
    export_seconds = time.perf_counter() - start
    sizes = {"checkpoint": args.checkpoint.stat().st_size}
    sizes.update({name: (out / file).stat().st_size for name, file in FILES.items()})

    model, _ = read_model(args.checkpoint)
    inputs = {b: [padded(waves[i : i + b]) for i in range(0, len(waves), b)] for b in (1, 16)}
    speed, log_probs = [], {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        models = {"pytorch_fused": fuse(model)}
        for name, file in FILES.items():
            models[name] = load_exported(out / file, threads=threads)
        timings = {(name, b): [] for name in BACKENDS for b in inputs}
        for name in BACKENDS:  # warm-up (first-call allocations, onnxruntime's thread pool)
            run_model(models[name], inputs[1][:2])
        for _ in range(args.repeats):
            for b in inputs:
                for name in BACKENDS:
                    seconds, valid = run_model(models[name], inputs[b])
                    timings[name, b].append(seconds)
                    if threads == thread_counts[0]:
                        log_probs.setdefault((name, b), valid)
        for (name, b), seconds in timings.items():
            rtfx = [audio_seconds / s for s in seconds]
            speed.append({
                "backend": name, "batch": b, "threads": threads, "rtfx": round(max(rtfx), 1),
                "rtfx_median": round(statistics.median(rtfx), 1),
            })  # fmt: skip
    torch.set_num_threads(thread_counts[0])

    parity = {}
    for name in BACKENDS[1:]:
        rows = {}
        for b in inputs:
            ref, got = log_probs["pytorch_fused", b], log_probs[name, b]
            diff = max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True))
            agree = np.concatenate(
                [r.argmax(1) == g.argmax(1) for r, g in zip(ref, got, strict=True)]
            )
            rows[f"batch_{b}"] = {
                "max_abs_log_prob_diff": float(f"{diff:.3g}"),
                "best_label_agreement": round(float(agree.mean()), 4),
            }
        parity[name] = rows

    paths = {"pytorch_fused": args.checkpoint, **{n: out / f for n, f in FILES.items()}}
    accuracy = accuracy_of(transcripts_of(paths, files), refs)
    dev_accuracy, cost = {}, {}
    pooled: dict[str, list[tuple[int, int]]] = {}
    for manifest in args.wer_manifest:
        dev = read_manifest(manifest)[: args.wer_limit]
        dev_refs = [u.text for u in dev]
        dev_transcripts = transcripts_of(paths, [Path(u.audio_filepath) for u in dev])
        dev_accuracy[relative(manifest)] = {
            "utterances": len(dev),
            **accuracy_of(dev_transcripts, dev_refs),
        }
        errors = beam_lm_errors(dev_transcripts, dev_refs)
        cost[relative(manifest)] = quantization_cost(errors)
        for name, per_utterance in errors.items():
            pooled.setdefault(name, []).extend(per_utterance)
    if len(args.wer_manifest) > 1:
        cost["all --wer-manifest utterances"] = quantization_cost(pooled)

    def ratio(r: dict) -> float:
        base = next(
            s["rtfx"]
            for s in speed
            if s["backend"] == "pytorch_fused"
            and (s["batch"], s["threads"]) == (r["batch"], r["threads"])
        )
        return round(r["rtfx"] / base, 2)

    results = {
        "command": "python scripts/bench_export.py " + " ".join(sys.argv[1:]),
        "note": (
            f"Load average {load_before} before, {load_average()} after, on a shared 2-core "
            "machine: absolute RTFx are noisy; the ratios between backends, measured "
            "interleaved in this one run, are what counts."
        ),
        "checkpoint": relative(args.checkpoint),
        "manifest": relative(args.manifest),
        "utterances": len(waves),
        "audio_seconds": round(audio_seconds, 2),
        "threads": thread_counts,
        "repeats": args.repeats,
        "export_seconds": round(export_seconds, 1),
        "rtfx_definition": "audio seconds / wall seconds, waveforms in memory -> log-probs",
        "speed": speed,
        "speed_vs_pytorch_fused": {
            f"{r['backend']}_batch_{r['batch']}_threads_{r['threads']}": ratio(r) for r in speed
        },
        "sizes_bytes": sizes,
        "accuracy_percent": accuracy,
        "accuracy_percent_by_manifest": dev_accuracy,
        "quantization_cost_beam_lm": cost,
        "parity_vs_pytorch_fused": parity,
    }
    path = "nothing (--dry-run)" if args.dry_run else write_results("export", results)
    for r in speed:
        rtfx, median = r["rtfx"], r["rtfx_median"]
        where = f"{r['backend']:14s} batch {r['batch']:2d}, {r['threads']} threads"
        print(f"{where}: RTFx {rtfx:7.1f} (median {median:.1f})")
    for manifest, table in {relative(args.manifest): accuracy, **dev_accuracy}.items():
        print(manifest)
        for name in BACKENDS:
            size = sizes.get(name, sizes["checkpoint"]) / 1e6
            greedy, beam = table[name]["greedy"]["wer"], table[name]["beam+lm"]["wer"]
            print(f"  {name:14s} WER greedy {greedy:.1f}%, beam+LM {beam:.1f}%; {size:.1f} MB")
    for where, by_name in cost.items():
        for name, c in by_name.items():
            (low, high), change = c["interval_95"], c["wer_change_points"]
            print(f"{where}: {name} - fp32 {change:+.2f} points ({low:+.2f} to {high:+.2f})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
