"""scripts/bench_export.py from its command line on a tiny model: every backend timed, sized and
scored, on the manifest and on each --wer-manifest (where int8's WER cost is measured on more
words than the ten examples hold)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stt.checkpoint import model_state, save_checkpoint
from stt.data.manifest import Utterance, write_manifest
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary

pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
pytest.importorskip("onnx", reason="needs the [onnx] extra")

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import bench_export  # noqa: E402
import machine  # noqa: E402  (scripts/machine.py, which the script writes results with)


def manifest(folder: Path, lengths: list[int]) -> Path:
    rng = np.random.default_rng(len(lengths))
    utterances = []
    for i, n in enumerate(lengths):
        path = folder / f"{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        utterances.append(Utterance(path, n / 16000, "the cat sat", {}))
    return write_manifest(folder / "m.jsonl", utterances)


def test_every_backend_is_timed_sized_and_scored_on_each_manifest(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "dev").mkdir()
    main = manifest(tmp_path / "a", [8000, 12000])
    dev = manifest(tmp_path / "dev", [6000, 9000, 16000])
    torch.manual_seed(0)
    config = ModelConfig(channels=8, kernel_size=3, dilations=[1, 2], stacks=1, stride=2,
                         head_channels=8)  # fmt: skip
    vocab = Vocabulary.default()
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, model_state(WaveNetCTC(config, len(vocab)).eval(), vocab))
    monkeypatch.setattr(machine, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", [
        "bench_export.py", "--checkpoint", str(checkpoint), "--manifest", str(main),
        "--repeats", "1", "--threads", "1", "--wer-manifest", str(dev),
        "--wer-limit", "2"])  # fmt: skip
    assert bench_export.main() == 0
    result = json.loads((tmp_path / "results" / "export.json").read_text())
    assert {(r["backend"], r["batch"]) for r in result["speed"]} == {
        (b, n) for b in bench_export.BACKENDS for n in (1, 16)}  # fmt: skip
    assert all(r["rtfx"] > 0 for r in result["speed"])
    assert set(result["sizes_bytes"]) == {"checkpoint", *bench_export.BACKENDS[1:]}
    ((name, table),) = result["accuracy_percent_by_manifest"].items()
    assert name == str(dev) and table["utterances"] == 2  # --wer-limit
    for scores in (result["accuracy_percent"], table):
        for backend in bench_export.BACKENDS:
            assert set(scores[backend]) == {"greedy", "beam+lm"}
            assert all(0 <= scores[backend][d]["wer"] for d in ("greedy", "beam+lm"))
    ((name, cost),) = result["quantization_cost_beam_lm"].items()  # one manifest: no pooling
    assert name == str(dev) and set(cost) == {"onnx_int8", "onnx_int4"}
    table = result["accuracy_percent_by_manifest"][name]
    for backend, c in cost.items():
        low, high = c["interval_95"]
        assert low <= c["wer_change_points"] <= high
        wers = (table[b]["beam+lm"]["wer"] for b in (backend, "onnx_fp32"))
        assert c["wer_change_points"] == pytest.approx(next(wers) - next(wers), abs=0.02)


def test_quantization_cost_is_the_word_weighted_change_in_points():
    errors = {
        "onnx_fp32": [(1, 10), (0, 10), (3, 20)],
        "onnx_int8": [(2, 10), (0, 10), (3, 20)],  # one more error in 40 words
        "onnx_int4": [(1, 10), (0, 10), (1, 20)],  # two fewer
    }
    cost = bench_export.quantization_cost(errors)
    assert cost["onnx_int8"]["wer_change_points"] == 2.5
    assert cost["onnx_int4"]["wer_change_points"] == -5.0
    for c in cost.values():
        low, high = c["interval_95"]
        assert low <= c["wer_change_points"] <= high
    same = bench_export.quantization_cost({name: errors["onnx_fp32"] for name in errors})
    assert all(c == {"wer_change_points": 0.0, "interval_95": [0.0, 0.0]} for c in same.values())
