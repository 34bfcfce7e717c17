"""When to stop: a plateau rule on a monitored dev metric, like Lightning's EarlyStopping."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class PlateauStopper:
    """Stop after ``patience`` evaluations without an improvement of at least ``min_delta``.

    ``mode`` is "min" for losses and error rates. State is plain data so it goes in checkpoints.
    """

    patience: int = 5
    min_delta: float = 0.0
    mode: str = "min"
    best: float | None = None
    bad_evals: int = 0

    def update(self, value: float) -> bool:
        """Record one evaluation; returns True if it is a new best."""
        if not math.isfinite(value):
            self.bad_evals += 1
            return False
        sign = 1.0 if self.mode == "min" else -1.0
        improved = self.best is None or sign * (self.best - value) > self.min_delta
        if improved:
            self.best = value
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
