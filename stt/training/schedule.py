"""Learning-rate schedules: linear warm-up, then inverse square root, cosine or constant."""

from __future__ import annotations

import math

import torch

from stt.errors import ConfigError


class WarmupSchedule:
    """Multiplier of the base learning rate at a step (a picklable ``LambdaLR`` function)."""

    def __init__(self, kind: str, warmup_steps: int, total_steps: int = 0, min_ratio: float = 0.05):
        if kind not in ("inverse_sqrt", "cosine", "constant"):
            raise ConfigError(f"optim.schedule must be inverse_sqrt, cosine or constant: {kind}")
        if kind == "cosine" and total_steps <= 0:
            raise ConfigError("optim.schedule=cosine needs optim.total_steps or trainer.max_steps")
        self.kind, self.warmup, self.total, self.min_ratio = (
            kind,
            warmup_steps,
            total_steps,
            min_ratio,
        )

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind == "inverse_sqrt":
            return max(self.min_ratio, math.sqrt(max(self.warmup, 1) / (step + 1)))
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupSchedule(kind, warmup, total, min_ratio)
    )
