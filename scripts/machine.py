"""Describe the machine a benchmark ran on, for the committed bench/results/*.json files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

# STT_BENCH_RESULTS: another folder (a trial run that must not replace the committed results).
RESULTS_DIR = Path(
    os.environ.get("STT_BENCH_RESULTS")
    or Path(__file__).resolve().parent.parent / "bench" / "results"
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> float:
    """The 1-minute load average: how busy the shared machine was around a measurement."""
    return round(os.getloadavg()[0], 2)


def describe_machine() -> dict:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(name: str, results: dict) -> Path:
    """Write ``bench/results/<name>.json`` with the machine description attached."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"machine": describe_machine(), **results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
