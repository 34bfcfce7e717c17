"""Checkpoints are read without running code: a crafted pickle is refused before it acts."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from stt.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_state,
    save_checkpoint,
)


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the shape of every pickle exploit."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "stt-checkpoint", "version": 1, "model": _Payload(marker)}, path)
    return path, marker


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused: the checkpoint names .*open"):
        load_checkpoint(path)
    assert not marker.exists()


def test_transcribe_with_a_malicious_model_is_one_line_and_runs_nothing(tmp_path, write_tone):
    path, marker = _malicious_checkpoint(tmp_path)
    audio = write_tone("a.wav", 0.3)
    result = subprocess.run(
        [sys.executable, "-m", "stt", "transcribe", str(audio), "--model", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("stt: error:")]
    assert len(lines) == 1 and "evil.pt: refused" in lines[0]
    assert not marker.exists()


def test_training_state_with_numpy_rng_round_trips(tmp_path):
    model = WaveNetCTC(ModelConfig(channels=8, dilations=[1], stacks=1, head_channels=8), 29)
    state = {**model_state(model, Vocabulary.default()), "rng": {"numpy": np.random.get_state()},
             "config": {"lr": 1e-3, "dev": ["a.jsonl"]}}  # fmt: skip
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ok.pt", state))
    np.testing.assert_array_equal(loaded["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert loaded["config"] == state["config"]


def test_a_plain_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"format": "stt-checkpoint"}))
    with pytest.raises(CheckpointError, match="plain.pt"):
        load_checkpoint(path)
