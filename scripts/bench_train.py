#!/usr/bin/env python
"""Training throughput of the shipped model configs on this machine, side by side in one run.

Measures audio-seconds trained per wall-second (forward, CTC loss, backward, AdamW step) on
batches shaped like real ones (4 s utterances, `--batch-seconds` of audio per batch, the
trainer's default augmentation off so the model alone is timed; data loading runs in parallel
workers during real training). Target (issue 3): >= 60 audio-s/s for the model that ships.

    .venv/bin/python scripts/bench_train.py [--configs small base] [--steps 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import write_results  # noqa: E402

from stt.config import conf_dir  # noqa: E402
from stt.model import ModelConfig, WaveNetCTC  # noqa: E402
from stt.text import Vocabulary  # noqa: E402

TARGET = 60.0


def load_model_config(name: str) -> ModelConfig:
    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(conf_dir() / "model" / f"{name}.yaml")
    )
    return OmegaConf.to_object(cfg)


def model_flops_per_audio_second(model: WaveNetCTC) -> float:
    """Multiply-accumulates x2 of the convolutions for one second of audio (forward only)."""
    c = model.config
    frames = 1000.0 / c.features.hop_ms / c.stride
    per_frame = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Conv1d):
            per_frame += (
                module.in_channels * module.out_channels * module.kernel_size[0] / module.stride[0]
            )
    return 2 * per_frame * frames


def bench(name: str, steps: int, batch_seconds: float, utt_seconds: float) -> dict:
    torch.manual_seed(0)
    vocab = Vocabulary.default()
    model = WaveNetCTC(load_model_config(name), len(vocab)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = max(1, int(batch_seconds // utt_seconds))
    samples = int(utt_seconds * 16000)
    waveforms = torch.randn(batch, samples) * 0.1
    lengths = torch.full((batch,), samples)
    targets = torch.randint(2, len(vocab), (batch, int(utt_seconds * 12)))
    target_lengths = torch.full((batch,), targets.shape[1])

    def step() -> None:
        log_probs, out_lengths = model(waveforms, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    speed = steps * batch * utt_seconds / elapsed
    flops = model_flops_per_audio_second(model)
    return {
        "config": name,
        "parameters": model.num_parameters(),
        "receptive_field_seconds": round(model.receptive_field_seconds, 2),
        "batch": f"{batch} x {utt_seconds:g} s",
        "audio_seconds_per_second": round(speed, 1),
        # forward + backward ~ 3x the forward FLOPs
        "train_gflops_per_second": round(3 * flops * speed / 1e9, 1),
        "forward_gflop_per_audio_second": round(flops / 1e9, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small", "base"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--utt-seconds", type=float, default=4.0)
    args = parser.parse_args()
    rows = [bench(n, args.steps, args.batch_seconds, args.utt_seconds) for n in args.configs]
    for row in rows:
        print(
            f"{row['config']:>8}: {row['parameters'] / 1e6:.2f} M params, "
            f"{row['audio_seconds_per_second']:.0f} audio-s/s, "
            f"{row['train_gflops_per_second']} GFLOP/s"
        )
    path = write_results(
        "train",
        {
            "benchmark": "train",
            "command": "python scripts/bench_train.py " + " ".join(sys.argv[1:]),
            "target_audio_seconds_per_second": TARGET,
            "results": rows,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
