#!/usr/bin/env python
"""Training throughput with the data path on the device (``data.on_device=true``): audio decoded
once into device memory, batches gathered, speed-perturbed, noised, featurised and
SpecAugmented there, then forward, CTC loss, backward and AdamW, under the trainer's autocast
(bf16 on a GPU). Writes ``bench/results/train_gpu.json`` (``--name``).

Reported, per model config, side by side in one run:

* ``audio_seconds_per_second``: training audio per wall second, end to end (batch building
  included), over ``--steps`` steps after ``--warmup`` ones;
* ``data_audio_seconds_per_second``: batch building and augmentation alone (the data path's
  ceiling);
* ``mfu``: model FLOPs (forward x3 for forward + backward) per second over the device's peak
  (``--peak-tflops``; 989 for an H100/H200's dense bf16), where a peak is known.

Target (issue 12): >= 20,000 audio-s/s for ``medium`` on an H100/H200-class GPU. On a CPU
(``--device cpu``) the same code runs, slowly: the script's test uses it that way.

    python scripts/bench_train_device.py TRAIN.jsonl [...] [--configs medium deep]
        [--steps 50] [--batch-seconds 600] [--device cuda] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import load_model_config, model_flops_per_audio_second  # noqa: E402
from machine import write_results  # noqa: E402

from stt.data.augment import AugmentConfig, SpecAugment  # noqa: E402
from stt.data.dataset import SpeechDataset  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.data.on_device import DeviceCorpus, DeviceLoader  # noqa: E402
from stt.data.sampler import DurationBucketSampler  # noqa: E402
from stt.errors import ManifestError, STTError  # noqa: E402
from stt.model import WaveNetCTC  # noqa: E402
from stt.text import Vocabulary  # noqa: E402
from stt.training.trainer import ctc_loss, pick_precision  # noqa: E402

TARGET = 20_000.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, corpus: DeviceCorpus, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    vocab = Vocabulary.default()
    model = WaveNetCTC(load_model_config(name), len(vocab)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    augment = AugmentConfig()
    spec_augment = SpecAugment(augment).to(device)
    dtype = pick_precision("auto", device)
    durations = (corpus.lengths.float() / 16000).tolist()
    sampler = DurationBucketSampler(durations, args.batch_seconds, shuffle=True, seed=0)
    loader = DeviceLoader(corpus, sampler, augment, seed=0)

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    for _ in range(args.warmup):  # the data path alone, warm
        next(stream)
    sync(device)
    start, seconds = time.perf_counter(), 0.0
    for _ in range(args.steps):
        seconds += next(stream).seconds
    sync(device)
    data_rate = seconds / (time.perf_counter() - start)

    def step() -> float:
        batch = next(stream)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            log_probs, out_lengths = model(batch.waveforms, batch.lengths, spec_augment)
        loss = ctc_loss(log_probs, out_lengths, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return batch.seconds

    for _ in range(args.warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, seconds = time.perf_counter(), 0.0
    for _ in range(args.steps):
        seconds += step()
    sync(device)
    rate = seconds / (time.perf_counter() - start)
    flops = 3 * model_flops_per_audio_second(model) * rate
    result = {
        "config": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": str(dtype).replace("torch.", "") if dtype else "float32",
        "steps": args.steps,
        "batch_seconds": args.batch_seconds,
        "audio_seconds_per_second": round(rate, 1),
        "data_audio_seconds_per_second": round(data_rate, 1),
        "model_tflops_per_second": round(flops / 1e12, 3),
        "mfu": round(flops / (args.peak_tflops * 1e12), 4) if args.peak_tflops else None,
    }
    if device.type == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    print(result, flush=True)
    return result


def load_corpus(manifests: list[Path], limit: int | None, device: torch.device) -> DeviceCorpus:
    """The manifests' utterances decoded onto the device; an empty selection is an error here,
    not a shape error deep in the first batch."""
    utterances = [u for m in manifests for u in read_manifest(m)[:limit]]
    if not utterances:
        names = ", ".join(str(m) for m in manifests)
        raise ManifestError(f"{names}: no utterances to train on")
    return DeviceCorpus(SpeechDataset(utterances, Vocabulary.default()), device, progress=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="+", type=Path, help="training manifests to load")
    parser.add_argument("--configs", nargs="+", default=["medium", "deep"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-seconds", type=float, default=600.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--limit", type=int, help="only the first N utterances of each manifest")
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's peak, for the MFU (989: H200 dense bf16)"
    )
    parser.add_argument("--name", default="train_gpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    start = time.perf_counter()
    try:
        corpus = load_corpus(args.manifests, args.limit, device)
    except STTError as e:
        print(f"stt: error: {e}", file=sys.stderr)
        return 1
    load_seconds = time.perf_counter() - start
    results = [bench(name, corpus, args, device) for name in args.configs]
    out = write_results(args.name, {
        "benchmark": "train_on_device",
        "command": "python scripts/bench_train_device.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "utterances": len(corpus),
        "audio_hours": round(float(corpus.lengths.sum()) / 16000 / 3600, 2),
        "audio_bytes_on_device": corpus.nbytes,
        "load_seconds": round(load_seconds, 1),
        "target_audio_seconds_per_second": TARGET,
        "results": results,
    })  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
