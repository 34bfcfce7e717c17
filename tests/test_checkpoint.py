"""Checkpoints are read without running code (a crafted pickle is refused before it acts), and
written so that a full disk, a read-only folder or Ctrl-C never costs the previous one."""

import errno
import os
import pickle
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from stt import checkpoint
from stt.checkpoint import load_checkpoint, model_state, save_checkpoint, shippable_state
from stt.errors import CheckpointError
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary


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


def test_a_folder_given_as_checkpoint_is_said_to_be_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_random_bytes_are_not_a_checkpoint_and_torch_advice_is_not_shown(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"{path}: not a checkpoint (not a PyTorch zip archive)"


def test_a_compressed_archive_is_refused_unread_so_a_zip_bomb_cannot_fill_memory(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _tiny_state(1))
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry))
        dst.writestr("good/data/huge", b"\0" * (1 << 20))  # 1 MiB of zeros: 1 KiB compressed
    with pytest.raises(CheckpointError, match="bomb.pt: refused: compressed entries"):
        load_checkpoint(bomb)


def test_an_archive_declaring_too_much_data_is_refused(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "big.pt", _tiny_state(1))
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 1024)
    with pytest.raises(CheckpointError, match="big.pt: refused: over"):
        load_checkpoint(path)


def test_a_truncated_checkpoint_is_a_one_line_error(tmp_path):
    path = save_checkpoint(tmp_path / "cut.pt", _tiny_state(1))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a"):
        load_checkpoint(path)


def _tiny_state(step: int) -> dict:
    model = WaveNetCTC(ModelConfig(channels=8, dilations=[1], stacks=1, head_channels=8), 29)
    return {**model_state(model, Vocabulary.default()), "step": step}


class _FailingHandle:
    """A file whose writes run ``on_write`` (after ``after`` successful ones), then go through."""

    def __init__(self, handle, on_write, after: int = 1):
        self._handle, self._on_write, self._left = handle, on_write, after

    def write(self, data):
        if self._left == 0:
            self._on_write()
        self._left -= 1
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _patch_torch_save(monkeypatch, on_write) -> None:
    """Run the real torch.save (its C++ writer) into a file whose second write calls on_write."""
    real_save = torch.save
    monkeypatch.setattr(
        checkpoint.torch, "save", lambda obj, f: real_save(obj, _FailingHandle(f, on_write))
    )


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["torch.save", "fsync"])
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(
    tmp_path, monkeypatch, where
):
    path = save_checkpoint(tmp_path / "last.pt", _tiny_state(1))
    before = path.read_bytes()
    if where == "torch.save":  # torch reports it as a RuntimeError; the OSError is its context
        _patch_torch_save(monkeypatch, _disk_full)
    else:
        monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: _disk_full())
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, _tiny_state(2))
    assert str(info.value) == f"{path}: cannot write checkpoint (No space left on device)"
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_an_unwritable_folder_is_a_one_line_checkpoint_error(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes through chmod 0o555: refuse the temporary file instead

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr("stt.atomic.tempfile.mkstemp", refuse)
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(
            CheckpointError, match=r"last.pt: cannot write checkpoint \(Permission denied\)$"
        ):
            save_checkpoint(folder / "last.pt", _tiny_state(1))
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_ctrl_c_during_a_write_completes_the_checkpoint_then_interrupts(
    tmp_path, monkeypatch, python_sigint
):
    path = save_checkpoint(tmp_path / "last.pt", _tiny_state(1))
    handler = signal.getsignal(signal.SIGINT)
    # The signal arrives while torch's C++ writer is writing: raised there, it became a
    # RuntimeError and a half-written file.
    _patch_torch_save(monkeypatch, lambda: signal.raise_signal(signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _tiny_state(2))
    assert load_checkpoint(path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_shippable_state_keeps_the_weights_and_a_training_summary_only(tmp_path):
    vocab = Vocabulary.default()
    model = WaveNetCTC(ModelConfig(channels=8, kernel_size=3, dilations=[1, 2], stacks=1,
                                   head_channels=8), len(vocab))  # fmt: skip
    dev = {"a/dev": {"loss": 1.5, "wer": 0.9, "cer": 0.4}}
    training = {**model_state(model, vocab), "optimizer": {"state": {}}, "epoch": 3, "step": 120,
                "dev_results": dev}  # fmt: skip
    small = shippable_state(training, "run/last.pt")
    assert set(small) == {"model", "model_config", "vocab", "trained"}
    assert small["trained"] == {"epoch": 3, "step": 120, "dev": dev}
    for key, value in model.state_dict().items():
        assert torch.equal(small["model"][key], value)
    # A shipped model's own summary is kept, not rebuilt from fields it no longer has.
    assert shippable_state(small, "model.pt")["trained"] == small["trained"]
