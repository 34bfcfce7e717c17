"""Training metrics: a CSV anyone can read, TensorBoard when installed, and a PNG of the curves."""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path

log = logging.getLogger(__name__)


class MetricsLogger:
    """Append ``(step, epoch, name, value)`` rows to ``metrics.csv`` and to TensorBoard.

    The CSV is opened in append mode, so a resumed run continues the same file.
    """

    FIELDS = ("step", "epoch", "name", "value")

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.csv"
        new = not self.path.exists()
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(self.FIELDS)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: metrics go to metrics.csv only")

    def log(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._csv.writerow((step, epoch, name, f"{value:.6g}"))
            if self._tb is not None:
                self._tb.add_scalar(name, value, step)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``metrics.csv`` as name -> [(step, value)], later rows replacing earlier ones per step.

    (After a resume, steps between the last checkpoint and the crash are logged twice.)
    """
    series: dict[str, dict[int, float]] = defaultdict(dict)
    with Path(path).open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            series[row["name"]][int(row["step"])] = float(row["value"])
    return {name: sorted(points.items()) for name, points in series.items()}


def plot_curves(metrics_csv: Path, out_png: Path) -> Path | None:
    """Loss (train and dev) and WER/CER per dev set against steps, in one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no curves PNG")
        return None
    series = read_metrics(metrics_csv)
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, points in sorted(series.items()):
        steps, values = zip(*points, strict=True) if points else ((), ())
        if name == "train/loss" or name.endswith("/loss"):
            ax_loss.plot(steps, values, label=name, alpha=0.6 if name == "train/loss" else 1)
        elif name.endswith("/wer") or name.endswith("/cer"):
            ax_err.plot(steps, [100 * v for v in values], label=name, marker=".")
    ax_loss.set(xlabel="step", ylabel="CTC loss (per character)", title="Loss", yscale="log")
    ax_err.set(xlabel="step", ylabel="%", title="Greedy WER / CER on dev sets")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
