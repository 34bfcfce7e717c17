"""scripts/bench_train_device.py on the CPU with a tiny manifest: the device data path and a
training step run end to end and the results name each config's throughput."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from stt.data.manifest import Utterance, write_manifest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import bench_train_device  # noqa: E402
import machine  # noqa: E402


def test_throughput_of_each_config_with_batches_built_on_the_device(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    utterances = []
    for i in range(4):
        path = tmp_path / f"{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(8000 + 2000 * i)).astype(np.float32), 16000)
        utterances.append(Utterance(path, (8000 + 2000 * i) / 16000, "a cat sat", {}))
    manifest = write_manifest(tmp_path / "train.jsonl", utterances)
    monkeypatch.setattr(machine, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", [
        "bench_train_device.py", str(manifest), "--configs", "small", "--steps", "2",
        "--warmup", "1", "--batch-seconds", "1.5", "--device", "cpu",
        "--name", "tiny"])  # fmt: skip
    assert bench_train_device.main() == 0
    result = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert result["utterances"] == 4 and result["audio_bytes_on_device"] == 2 * 44000
    (row,) = result["results"]
    assert row["config"] == "small" and row["precision"] == "float32"
    assert row["audio_seconds_per_second"] > 0 and row["data_audio_seconds_per_second"] > 0
    assert row["mfu"] is None  # no --peak-tflops given


def test_an_empty_manifest_is_one_error_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "empty.jsonl"
    manifest.write_text("")
    monkeypatch.setattr(machine, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", ["bench_train_device.py", str(manifest), "--device", "cpu"])
    assert bench_train_device.main() == 1
    err = capsys.readouterr().err.strip()
    assert err == f"stt: error: {manifest}: no utterances to train on"
    assert not (tmp_path / "results").exists()
