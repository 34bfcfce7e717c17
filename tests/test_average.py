"""stt.training.average and scripts/average_checkpoints.py: the weighted mean of checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stt.checkpoint import (
    load_checkpoint,
    model_state,
    read_model,
    save_checkpoint,
    shippable_state,
)
from stt.errors import ConfigError
from stt.text import Vocabulary
from stt.training.average import average_checkpoints
from tests.model_fixtures import model_with_norm_statistics

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(channels=8, kernel_size=3, dilations=[1, 2], stacks=1, stride=2, head_channels=16)
VOCAB = Vocabulary.default()


def saved(tmp_path: Path, name: str, seed: int, **config) -> Path:
    model = model_with_norm_statistics({**SMALL, **config}, len(VOCAB), seed)
    return save_checkpoint(tmp_path / name, model_state(model, VOCAB))


def test_the_mean_is_weighted_per_tensor_and_runs(tmp_path):
    a, b = saved(tmp_path, "a.pt", 0), saved(tmp_path, "b.pt", 1)
    line = average_checkpoints([a, b], tmp_path / "mean.pt", weights=[1, 3])
    assert "0.25 x" in line and "0.75 x" in line
    (ma, _), (mb, _), (mean, vocab) = read_model(a), read_model(b), read_model(tmp_path / "mean.pt")
    assert vocab == VOCAB
    sa, sb, sm = ma.state_dict(), mb.state_dict(), mean.state_dict()
    for name, value in sm.items():
        if value.is_floating_point():  # weights and batch-norm statistics alike
            torch.testing.assert_close(value, 0.25 * sa[name] + 0.75 * sb[name])
        else:  # batch counters: the last checkpoint's
            assert torch.equal(value, sb[name])
    assert not torch.equal(sm["input_proj.conv.weight"], sa["input_proj.conv.weight"])
    summary = shippable_state(load_checkpoint(tmp_path / "mean.pt"))["trained"]  # packageable
    assert summary == {"averaged": [{"checkpoint": str(a), "share": 0.25},
                                    {"checkpoint": str(b), "share": 0.75}]}  # fmt: skip
    with torch.no_grad():
        log_probs, _ = mean(torch.randn(1, 8000), torch.tensor([8000]))
    assert torch.isfinite(log_probs).all()


def test_equal_shares_by_default(tmp_path):
    a, b = saved(tmp_path, "a.pt", 0), saved(tmp_path, "b.pt", 1)
    average_checkpoints([a, b], tmp_path / "mean.pt")
    sa, sb = read_model(a)[0].state_dict(), read_model(b)[0].state_dict()
    got = read_model(tmp_path / "mean.pt")[0].state_dict()["input_proj.conv.weight"]
    torch.testing.assert_close(
        got, (sa["input_proj.conv.weight"] + sb["input_proj.conv.weight"]) / 2
    )


def test_a_different_dropout_rate_still_averages_and_the_last_ones_is_kept(tmp_path):
    """A warm restart may train with dropout a model that had none: the same weights' shapes."""
    a, b = saved(tmp_path, "a.pt", 0, dropout=0.0), saved(tmp_path, "b.pt", 1, dropout=0.1)
    average_checkpoints([a, b], tmp_path / "mean.pt")
    mean, _ = read_model(tmp_path / "mean.pt")
    assert mean.config.dropout == 0.1
    sa, sb = read_model(a)[0].state_dict(), read_model(b)[0].state_dict()
    torch.testing.assert_close(
        mean.state_dict()["input_proj.conv.weight"],
        (sa["input_proj.conv.weight"] + sb["input_proj.conv.weight"]) / 2,
    )


def test_models_of_different_shapes_or_bad_weights_are_refused(tmp_path):
    a, wide = saved(tmp_path, "a.pt", 0), saved(tmp_path, "wide.pt", 1, channels=12)
    with pytest.raises(ConfigError, match="not the same model"):
        average_checkpoints([a, wide], tmp_path / "mean.pt")
    with pytest.raises(ConfigError, match="at least two"):
        average_checkpoints([a], tmp_path / "mean.pt")
    with pytest.raises(ConfigError, match="one per checkpoint"):
        average_checkpoints([a, a], tmp_path / "mean.pt", weights=[1])
    assert not (tmp_path / "mean.pt").exists()


def test_the_script_writes_the_mean_and_errors_in_one_line(tmp_path):
    a, b = saved(tmp_path, "a.pt", 0), saved(tmp_path, "b.pt", 1)
    script = [sys.executable, str(ROOT / "scripts" / "average_checkpoints.py")]
    ok = subprocess.run([*script, str(a), str(b), str(tmp_path / "m.pt")], capture_output=True,
                        text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m.pt").exists() and "M parameters" in ok.stdout
    bad = subprocess.run([*script, str(a), str(tmp_path / "missing.pt"), str(tmp_path / "n.pt")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("stt: error:")
    assert "missing.pt" in bad.stderr and "Traceback" not in bad.stderr
    weights = subprocess.run([*script, str(a), str(b), str(tmp_path / "w.pt"), "--weights", "x"],
                             capture_output=True, text=True)  # fmt: skip
    assert weights.returncode == 1 and "--weights x" in weights.stderr
