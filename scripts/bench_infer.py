#!/usr/bin/env python
"""Inference speed of the shipped model on this CPU, and its distance to the machine's limit.

On the utterances of a test manifest, loaded into memory first, in one run:

* **model only** (16 kHz waveforms -> log-probs): RTFx at batch 1 and batch 16 for the model as
  trained (``original``: PyTorch's conv1d path) and for its fused inference copy (``fused``,
  :mod:`stt.fusion`, what ``stt`` runs), at torch threads = cores and at 1 thread;
* **end to end** (waveforms -> text, as ``stt eval`` / ``stt transcribe`` run a batch:
  :func:`stt.inference.infer_log_probs` then the decoder): RTFx at batch 1 and 16 with greedy
  decoding and with the model's beam search + KenLM settings (``decoder.yaml``), with and
  without fusion;
* **FLOPs**: multiply-adds (x2) of the model per second of audio, counted analytically (MFCC
  front end and encoder separately) and cross-checked with ``torch.utils.flop_counter``; the
  achieved GFLOP/s of each model-only measurement next to the machine's fp32 matrix-multiply
  peak (``torch.mm`` of 1024^2 and 2048^2 matrices, same threads, best of 7), measured in this
  run; and decoding alone (log-probs computed beforehand), to show where the rest goes.

RTFx = audio seconds / wall seconds of recognition (audio already in memory). Configurations
are interleaved and repeated; each figure is the best of ``--repeats`` (interference from other
processes only ever slows a run down), the median is stored too. Targets (issue 8): RTFx >= 300
greedy and >= 100 beam + LM at batch 1 on 2 cores.

    .venv/bin/python scripts/bench_infer.py [--checkpoint CKPT] [--manifest TEST.jsonl]
        [--limit N] [--repeats 3] [--quick] [--compile]

Writes ``bench/results/infer.json`` (with the README's table) and ``bench/results/infer.png``.
The whole default test set (273 utterances, 16 minutes of audio) takes a few minutes on two
quiet cores; on a busy machine the two-thread runs are much slower (see the README).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import RESULTS_DIR, load_average, write_results  # noqa: E402

from stt.audio import SAMPLE_RATE  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.decoding import DecoderConfig, build_decoder  # noqa: E402
from stt.errors import AudioError, STTError  # noqa: E402
from stt.fusion import fuse  # noqa: E402
from stt.inference import infer_log_probs, load_many  # noqa: E402
from stt.model import WaveNetCTC  # noqa: E402
from stt.transcribe import default_model_path, load_model  # noqa: E402

DEFAULT_MANIFEST = Path("data_cache/synth/test.jsonl")
TARGETS = {"greedy": 300.0, "beam+lm": 100.0}  # RTFx at batch 1
MATMUL_SIZES = (1024, 2048)
MAKE_DATA = """\
{missing}: no such manifest. The default test sets are made by the first steps of
scripts/train_reference_run.sh:
    .venv/bin/stt synth data_cache/synth --hours 2.8 --seed 1
    .venv/bin/stt data split ../shared/data/an4_train/manifest.jsonl data_cache/an4 \\
        --dev-fraction 0.1 --speaker-pattern '^([^_]+)_'
    .venv/bin/stt data split ../shared/data/fsdd_train/manifest.jsonl data_cache/fsdd \\
        --dev-fraction 0.15 --speaker-pattern '^\\d+_([a-z]+)_'
or pass manifests of your own."""


# ---------------------------------------------------------------------------------------------
# Shared with bench_peer.py
# ---------------------------------------------------------------------------------------------


def command_line(script: str) -> str:
    return f"python scripts/{script} " + shlex.join(sys.argv[1:])


def load_test_set(manifest: Path, limit: int | None) -> tuple[list, list[np.ndarray]]:
    """``(utterances, 16 kHz float32 waveforms)`` of a manifest's first ``limit`` lines; exits
    with instructions when the manifest is missing, skips (and counts) unreadable audio."""
    if not manifest.is_file():
        sys.exit(MAKE_DATA.format(missing=manifest))
    try:
        utterances = read_manifest(manifest)[:limit]
    except STTError as exc:
        sys.exit(str(exc))
    loaded = load_many([u.audio_filepath for u in utterances])
    keep = [i for i, w in enumerate(loaded) if not isinstance(w, AudioError)]
    if len(keep) < len(utterances):
        print(f"{manifest}: {len(utterances) - len(keep)} unreadable audio files skipped")
    return [utterances[i] for i in keep], [loaded[i] for i in keep]


# ---------------------------------------------------------------------------------------------
# FLOPs and the machine's peak
# ---------------------------------------------------------------------------------------------


def front_end_flops_per_frame(model: WaveNetCTC) -> dict[str, float]:
    """FLOPs of one MFCC frame: real FFT (2.5 N log2 N), window, power, mel, log, DCT."""
    f = model.config.features
    n_fft, freqs = f.n_fft, f.n_fft // 2 + 1
    return {
        "fft": 2.5 * n_fft * math.log2(n_fft),
        "window": float(n_fft),
        "power": 3.0 * freqs,
        "mel": 2.0 * freqs * f.n_mels,
        "log": float(f.n_mels),
        "dct": 2.0 * f.n_mels * f.n_mfcc,
    }


def encoder_flops_per_frame(model: WaveNetCTC) -> dict[str, float]:
    """Multiply-adds x 2 of the convolutions (matrix work) per output frame, by layer kind."""
    c = model.config
    proj = model.input_proj
    blocks = model.blocks
    return {
        "input_projection": 2.0 * c.features.n_mfcc * c.channels * proj.kernel_size,
        "dilated_convs": sum(2.0 * c.channels * 2 * c.channels * c.kernel_size for _ in blocks),
        "residual_1x1": sum(2.0 * c.channels**2 for b in blocks if b.res is not None),
        "skip_1x1": sum(2.0 * c.channels**2 for _ in blocks),
        "head": 2.0 * c.channels * c.head_channels + 2.0 * c.head_channels * model.vocab_size,
    }


def flop_counter_encoder(model: torch.nn.Module, seconds: float = 10.0) -> float:
    """Encoder FLOPs per audio second as torch.utils.flop_counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    frames = int(seconds * 1000 / model.config.features.hop_ms)
    feats = torch.randn(1, model.config.features.n_mfcc, frames)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.forward_features(feats, torch.tensor([frames]))
    return counter.get_total_flops() / seconds


def flops_summary(model: WaveNetCTC) -> dict:
    front = front_end_flops_per_frame(model)
    enc = encoder_flops_per_frame(model)
    feature_rate = 1000 / model.config.features.hop_ms  # frames per audio second
    out_rate = 1000 / model.frame_ms
    front_total = sum(front.values()) * feature_rate
    enc_total = sum(enc.values()) * out_rate
    return {
        "unit": "FLOPs per second of audio (a multiply-add counts 2)",
        "front_end": round(front_total),
        "front_end_per_frame": {k: round(v) for k, v in front.items()},
        "front_end_frames_per_second": feature_rate,
        "encoder": round(enc_total),
        "encoder_per_frame": {k: round(v) for k, v in enc.items()},
        "encoder_frames_per_second": out_rate,
        "total": round(front_total + enc_total),
        "flop_counter_encoder": round(flop_counter_encoder(model)),
        "not_counted": "element-wise work: masks, norms (folded when fused), gates, softmax",
    }


def matmul_peak_gflops(
    threads: int, sizes: tuple[int, ...] = MATMUL_SIZES, repeats: int = 7
) -> float:
    """Best GFLOP/s of fp32 ``n x n @ n x n`` torch.mm with ``threads`` threads, over ``sizes``
    and ``repeats`` (the smaller size gives more chances of a slot without interference)."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


# ---------------------------------------------------------------------------------------------
# Timed runs
# ---------------------------------------------------------------------------------------------


def batches_of(waveforms: list[np.ndarray], size: int) -> list[list[np.ndarray]]:
    """Consecutive groups of ``size`` utterances, in manifest order (mixed lengths, as a user's
    files come)."""
    return [waveforms[i : i + size] for i in range(0, len(waveforms), size)]


def padded(batch: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in batch])
    out = torch.zeros(len(batch), int(lengths.max()))
    for row, w in enumerate(batch):
        out[row, : len(w)] = torch.from_numpy(w)
    return out, lengths


@torch.inference_mode()
def time_model(model: torch.nn.Module, inputs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Wall seconds of ``model(waveforms, lengths)`` -> numpy log-probs over all inputs."""
    start = time.perf_counter()
    for waves, lengths in inputs:
        log_probs, _ = model(waves, lengths)
        log_probs.numpy()
    return time.perf_counter() - start


def time_end_to_end(model, decoder, batches, fused: bool) -> float:
    """Wall seconds of log-probs (:func:`infer_log_probs`) and decoding, batch by batch."""
    frame_seconds = model.frame_ms / 1000
    start = time.perf_counter()
    for batch in batches:
        decoder.decode_batch(infer_log_probs(model, batch, fuse=fused), frame_seconds)
    return time.perf_counter() - start


def summarise(seconds: list[float], audio_seconds: float) -> dict:
    rtfx = [audio_seconds / s for s in seconds]
    return {"rtfx": round(max(rtfx), 1), "rtfx_median": round(statistics.median(rtfx), 1)}


# ---------------------------------------------------------------------------------------------
# Figure and main
# ---------------------------------------------------------------------------------------------


def markdown_table(results: dict) -> str:
    """The README's table: RTFx by configuration, batch and threads, and GFLOP/s vs the peak."""
    cores = results["threads"]
    columns = [(b, t) for t in sorted({cores, 1}, reverse=True) for b in (1, 16)]
    head = " | ".join(f"batch {b}, {t} thread{'s' if t > 1 else ''}" for b, t in columns)
    lines = [f"| RTFx (audio s / wall s) | {head} |", "|---|" + "---|" * len(columns)]

    def pick(rows: list[dict], **want) -> dict | None:
        return next((r for r in rows if all(r.get(k) == v for k, v in want.items())), None)

    def row(label: str, rows: list[dict], only_threads: int | None = None) -> None:
        """``only_threads``: rows without a thread count, measured at that many threads."""
        cells = []
        for b, t in columns:
            if only_threads is None:
                r = pick(rows, batch=b, threads=t)
            else:
                r = pick(rows, batch=b) if t == only_threads else None
            cells.append("–" if r is None else f"{r['rtfx']:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    mo, e2e = results["model_only"], results["end_to_end"]
    row("model only, as trained", [r for r in mo if r["variant"] == "original"])
    row("model only, fused (`stt.fusion`)", [r for r in mo if r["variant"] == "fused"])
    peaks = results["matmul_peak_gflops"]
    cells = []
    for b, t in columns:
        r = pick(mo, variant="fused", batch=b, threads=t)
        share = 100 * r["fraction_of_matmul_peak"]
        cells.append(f"{r['gflops']:.0f} of {peaks[str(t)]:.0f} ({share:.0f}%)")
    lines.append("| model only, fused: GFLOP/s of the matmul peak | " + " | ".join(cells) + " |")
    for d, name in (("greedy", "greedy"), ("beam+lm", "beam + LM")):
        for fused, how in ((False, "as trained"), (True, "fused")):
            rows = [r for r in e2e if r["decoder"] == d and r["fused"] == fused]
            row(f"{name}, end to end, {how}", rows)
    decoding = [r for r in results.get("decode_only", []) if r["decoder"] == "beam+lm"]
    row("beam + LM, decoding alone", decoding, only_threads=cores)
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = results["threads"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    e2e = results["end_to_end"]
    groups = sorted({(r["decoder"], r["batch"]) for r in e2e}, key=lambda g: (g[0] != "greedy", g))
    labels = [f"{d}\nbatch {b}" for d, b in groups]
    x = np.arange(len(groups))
    series = [
        ((False, cores), f"original model, {cores} thr", "#bbbbbb"),
        ((True, cores), f"fused (stt.fusion), {cores} thr", "#1f77b4"),
        ((True, 1), "fused, 1 thr", "#2ca02c"),
    ]
    series = [s for s in series if any((r["fused"], r["threads"]) == s[0] for r in e2e)]
    width = 0.8 / len(series)
    for i, (key, label, color) in enumerate(series):
        rows = {(r["decoder"], r["batch"]): r for r in e2e if (r["fused"], r["threads"]) == key}
        offset = (i - (len(series) - 1) / 2) * width
        ax1.bar(x + offset, [rows[g]["rtfx"] for g in groups], width, label=label, color=color)
    for name, target in TARGETS.items():
        ax1.axhline(target, ls="--", lw=1, color="red" if name == "greedy" else "orange")
        ax1.text(
            len(labels) - 0.5,
            target,
            f"target {name} b1: {target:g}",
            va="bottom",
            ha="right",
            fontsize=8,
        )
    ax1.set_xticks(x, labels, fontsize=8)
    ax1.set_ylabel("RTFx (audio s / wall s)")
    ax1.set_title("End to end (waveform -> text)")
    ax1.legend(fontsize=8)

    mo = results["model_only"]
    keys = sorted({(r["batch"], r["threads"]) for r in mo}, key=lambda k: (-k[1], k[0]))
    labels = [f"batch {b}\n{t} thr" for b, t in keys]
    x = np.arange(len(keys))
    names = [v for v in ("original", "compiled", "fused") if any(r["variant"] == v for r in mo)]
    width = 0.8 / len(names)
    colors = {"original": "#bbbbbb", "compiled": "#ff7f0e", "fused": "#1f77b4"}
    for i, variant in enumerate(names):
        rows = {(r["batch"], r["threads"]): r for r in mo if r["variant"] == variant}
        offset = (i - (len(names) - 1) / 2) * width
        for ax, key in ((ax2, "rtfx"), (ax3, "gflops")):
            ax.bar(
                x + offset,
                [rows[k][key] for k in keys],
                width,
                label=variant,
                color=colors[variant],
            )
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.set_ylabel("RTFx")
    ax2.set_title("Model only (waveform -> log-probs)")
    ax2.legend(fontsize=8)
    for threads, peak in results["matmul_peak_gflops"].items():
        ax3.axhline(peak, ls="--", lw=1, color="black")
        ax3.text(
            len(keys) - 0.5,
            peak,
            f"fp32 mm peak, {threads} thr: {peak:.0f}",
            va="bottom",
            ha="right",
            fontsize=8,
        )
    ax3.set_xticks(x, labels, fontsize=8)
    ax3.set_ylabel("GFLOP/s")
    ax3.set_title("Achieved GFLOP/s vs matmul peak")
    ax3.legend(fontsize=8, loc="center left")
    m = results["machine_summary"]
    fig.suptitle(
        f"{results['model_description']}\n{m} (load average {results['load_average']})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped model")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, help="first N utterances of the manifest")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="default: cores")
    parser.add_argument("--quick", action="store_true", help="--limit 48 --repeats 2")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile(original model) (compiling takes minutes on 2 cores)",
    )
    parser.add_argument("--note", help="a remark stored with the results")
    args = parser.parse_args()
    if args.quick:
        args.limit = args.limit or 48
        args.repeats = min(args.repeats, 2)
    cores = args.threads
    torch.set_num_threads(cores)
    load_start = load_average()

    checkpoint = args.checkpoint or default_model_path()
    transcriber = load_model(checkpoint)  # the model, its vocabulary and its tuned decoder
    model, vocab, beam_config = transcriber.model, transcriber.vocab, transcriber.decoder_config
    transcriber.close()
    if beam_config.kind != "beam" or not beam_config.lm:
        sys.exit(f"{checkpoint}: no beam search + LM settings (decoder.yaml) beside it")
    utterances, waveforms = load_test_set(args.manifest, args.limit)
    audio_seconds = sum(len(w) for w in waveforms) / SAMPLE_RATE
    print(
        f"{model.describe()}\n{args.manifest}: {len(waveforms)} utterances, "
        f"{audio_seconds:.0f} s of audio; threads {cores}, load average {load_start}"
    )

    flops = flops_summary(model)
    thread_settings = sorted({cores, 1}, reverse=True)
    peaks = {t: round(matmul_peak_gflops(t), 1) for t in thread_settings}
    print(
        f"FLOPs per audio second: front end {flops['front_end'] / 1e6:.1f} M, encoder "
        f"{flops['encoder'] / 1e6:.1f} M; fp32 matmul peak {peaks} GFLOP/s"
    )

    # Model only: original vs fused, batch 1 / 16, threads cores / 1, interleaved.
    variants = {"original": model, "fused": fuse(model)}
    inputs = {b: [padded(batch) for batch in batches_of(waveforms, b)] for b in (1, 16)}
    compile_seconds = None
    if args.compile:
        start = time.perf_counter()
        variants["compiled"] = torch.compile(model, dynamic=True)
        time_model(variants["compiled"], inputs[1][:3] + inputs[16][:1])
        compile_seconds = round(time.perf_counter() - start, 1)
    configs = [(v, b, t) for t in thread_settings for b in (1, 16) for v in variants]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for t in thread_settings:  # warm-up: first calls allocate
        torch.set_num_threads(t)
        for v in variants.values():
            time_model(v, inputs[1][:3] + inputs[16][:1])
    for r in range(args.repeats):
        for v, b, t in configs:
            torch.set_num_threads(t)
            times[(v, b, t)].append(time_model(variants[v], inputs[b]))
        print(f"model only, repeat {r + 1}/{args.repeats} done")
    model_only = []
    for v, b, t in configs:
        row = {"variant": v, "batch": b, "threads": t, **summarise(times[(v, b, t)], audio_seconds)}
        row["gflops"] = round(flops["total"] * row["rtfx"] / 1e9, 1)
        row["fraction_of_matmul_peak"] = round(row["gflops"] / peaks[t], 3)
        model_only.append(row)
        print(
            f"  {v:>8} batch {b:>2} threads {t}: RTFx {row['rtfx']:7.1f} "
            f"(median {row['rtfx_median']:.1f}), {row['gflops']:.1f} GFLOP/s = "
            f"{100 * row['fraction_of_matmul_peak']:.0f}% of peak"
        )

    # End to end: infer_log_probs (fused or not) + greedy / beam + LM, at threads = cores (and
    # fused at 1 thread); then decoding alone, on log-probs computed beforehand.
    decoders = {
        "greedy": build_decoder(vocab, DecoderConfig(kind="greedy")),
        "beam+lm": build_decoder(vocab, beam_config),
    }
    e2e_configs = [
        (d, b, f, t)
        for t in thread_settings
        for d in decoders
        for b in (1, 16)
        for f in ((False, True) if t == cores else (True,))
    ]
    e2e_batches = {b: batches_of(waveforms, b) for b in (1, 16)}
    e2e_times: dict[tuple, list[float]] = {c: [] for c in e2e_configs}
    torch.set_num_threads(cores)
    for decoder in decoders.values():  # warm-up: the beam decoder's pool and caches
        time_end_to_end(model, decoder, e2e_batches[16][:1] + e2e_batches[1][:2], True)
    for r in range(args.repeats):
        for d, b, f, t in e2e_configs:
            torch.set_num_threads(t)
            e2e_times[(d, b, f, t)].append(time_end_to_end(model, decoders[d], e2e_batches[b], f))
        print(f"end to end, repeat {r + 1}/{args.repeats} done")
    torch.set_num_threads(cores)
    log_probs = infer_log_probs(model, waveforms)
    frame_seconds = model.frame_ms / 1000
    decode_times: dict[tuple, list[float]] = {(d, b): [] for d in decoders for b in (1, 16)}
    for _ in range(args.repeats):
        for d, b in decode_times:
            start = time.perf_counter()
            for i in range(0, len(log_probs), b):
                decoders[d].decode_batch(log_probs[i : i + b], frame_seconds)
            decode_times[(d, b)].append(time.perf_counter() - start)
    for decoder in decoders.values():
        decoder.close()
    end_to_end = []
    for d, b, f, t in e2e_configs:
        row = {"decoder": d, "batch": b, "fused": f, "threads": t}
        row.update(summarise(e2e_times[(d, b, f, t)], audio_seconds))
        end_to_end.append(row)
        print(
            f"  {d:>8} batch {b:>2} {'fused' if f else 'original':>8} threads {t}: "
            f"RTFx {row['rtfx']:7.1f} (median {row['rtfx_median']:.1f})"
        )
    decode_only = []
    for (d, b), seconds in decode_times.items():
        decode_only.append({"decoder": d, "batch": b, **summarise(seconds, audio_seconds)})
        print(f"  decoding alone, {d:>8} batch {b:>2}: RTFx {decode_only[-1]['rtfx']:8.1f}")

    def e2e(decoder: str, batch: int, fused: bool = True, threads: int = cores) -> float:
        key = (decoder, batch, fused, threads)
        return next(
            r["rtfx"]
            for r in end_to_end
            if (r["decoder"], r["batch"], r["fused"], r["threads"]) == key
        )

    def mo(variant: str, batch: int, threads: int) -> float:
        return next(
            r["rtfx"]
            for r in model_only
            if (r["variant"], r["batch"], r["threads"]) == (variant, batch, threads)
        )

    targets = {
        f"{d}_batch1": {
            "target_rtfx": target,
            "rtfx": e2e(d, 1),
            "met": e2e(d, 1) >= target,
            **({"rtfx_1_thread": e2e(d, 1, True, 1)} if cores != 1 else {}),
        }
        for d, target in TARGETS.items()
    }
    speedups = {
        f"model_only_batch{b}_threads{t}": round(mo("fused", b, t) / mo("original", b, t), 2)
        for t in thread_settings
        for b in (1, 16)
    }
    speedups.update(
        {
            f"end_to_end_{d}_batch{b}_threads{cores}": round(e2e(d, b) / e2e(d, b, False), 2)
            for d in decoders
            for b in (1, 16)
        }
    )
    load_end = load_average()
    from machine import describe_machine

    machine = describe_machine()
    results = {
        "benchmark": "infer",
        "command": command_line("bench_infer.py"),
        "checkpoint": str(checkpoint),
        "model_description": model.describe(),
        "parameters": model.num_parameters(),
        "manifest": str(args.manifest),
        "utterances": len(waveforms),
        "audio_seconds": round(audio_seconds, 1),
        "threads": cores,
        "load_average": {"start": load_start, "end": load_end},
        "statistic": f"best of {args.repeats} interleaved repeats (rtfx_median: their median)",
        "beam_decoder": {
            "beam_width": beam_config.beam_width,
            "alpha": beam_config.alpha,
            "beta": beam_config.beta,
            "lm": Path(beam_config.lm).name,
        },
        "flops": flops,
        "matmul_peak_gflops": {str(t): p for t, p in peaks.items()},
        "matmul_peak_how": "best of 7 fp32 torch.mm of square matrices of sizes "
        + " and ".join(map(str, MATMUL_SIZES)),
        "model_only": model_only,
        **({"compile_seconds": compile_seconds} if args.compile else {}),
        "end_to_end": end_to_end,
        "decode_only": decode_only,
        "speedup_fused_over_original": speedups,
        "targets": targets,
        "table_markdown": None,  # filled below, from the rows above
        **({"note": args.note} if args.note else {}),
    }
    results["table_markdown"] = markdown_table(results)
    path = write_results("infer", results)
    results["machine_summary"] = (
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}"
    )
    results["load_average"] = f"{load_start} -> {load_end}"
    plot(results, RESULTS_DIR / "infer.png")
    print(results["table_markdown"])
    for name, t in targets.items():
        print(
            f"target {name}: RTFx {t['rtfx']:.0f} vs {t['target_rtfx']:.0f}: "
            f"{'met' if t['met'] else 'NOT met'}"
        )
    print(f"-> {path}, {RESULTS_DIR / 'infer.png'}")


if __name__ == "__main__":
    main()
