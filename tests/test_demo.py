"""`stt demo`, the README's first command: the data pipeline now, transcription with a model."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from stt.checkpoint import model_state, save_checkpoint
from stt.data.manifest import read_manifest
from stt.demo import EXAMPLES
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from tests.conftest import requires_synth_tools


def stt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stt", *args], capture_output=True, text=True, env=env, check=False
    )


@requires_synth_tools
def test_demo_without_a_model_shows_synthesized_speech_features_and_validation(tmp_path):
    env = {**os.environ, "STT_DEFAULT_MODEL": str(tmp_path / "no-model.pt")}
    result = stt("demo", "--out", str(tmp_path / "demo"), env=env)
    assert result.returncode == 0, result.stderr
    assert "no trained model ships yet" in result.stdout
    assert "features (1, 40," in result.stdout
    assert result.stdout.count(": OK") == 3


def test_demo_with_a_model_transcribes_every_example_and_prints_the_wer(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary.default()
    model = WaveNetCTC(ModelConfig(channels=16, kernel_size=3, dilations=[1], stacks=1,
                                   head_channels=16), len(vocab))  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "m.pt", model_state(model.eval(), vocab))
    result = stt("demo", "--model", str(checkpoint))
    assert result.returncode == 0, result.stderr
    for utt in read_manifest(EXAMPLES):
        assert f"reference:  {utt.text}" in result.stdout
    assert result.stdout.count("transcript:") == len(read_manifest(EXAMPLES))
    assert "== WER" in result.stdout
