"""`stt train` under faults: a full disk, a read-only run folder, Ctrl-C and kill -9 while it
writes a checkpoint, kill -9 mid-epoch. Each costs at most one checkpoint interval and never
the previous checkpoint; each is one line on stderr, never a traceback."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from stt import checkpoint
from stt.checkpoint import load_checkpoint, read_model
from stt.cli import main
from stt.training.metrics_log import read_metrics
from tests.conftest import requires_synth_tools, tiny_corpus
from tests.test_train import cli_args, stt_train

pytestmark = requires_synth_tools


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fault-corpus")
    return tiny_corpus(out, "the {a} {b} went to the market on a sunny day", seed=2)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    """A run folder after 2 steps, with last.pt and best.pt; copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *cli_args(corpus, run_dir, *_TWO_STEPS)]) == 0
    return run_dir


_TWO_STEPS = ("trainer.max_steps=2", "trainer.eval_every_steps=1")


def _copy(run_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    copy = shutil.copytree(run_dir, tmp_path / "run")
    return copy, {name: (copy / name).read_bytes() for name in ("last.pt", "best.pt")}


def _leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".partial"))


class _Handle:
    """A file whose second write runs ``on_write`` first (a full disk, a Ctrl-C)."""

    def __init__(self, handle, on_write):
        self._handle, self._on_write, self._writes = handle, on_write, 0

    def write(self, data):
        self._writes += 1
        if self._writes == 2:
            self._on_write()
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _patch_writes(monkeypatch, on_write) -> None:
    real_save = torch.save
    monkeypatch.setattr(
        checkpoint.torch, "save", lambda obj, f: real_save(obj, _Handle(f, on_write))
    )


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_stops_training_in_one_line_and_keeps_the_checkpoints(
    corpus, trained, tmp_path, monkeypatch, capsys
):
    run_dir, before = _copy(trained, tmp_path)
    capsys.readouterr()
    _patch_writes(monkeypatch, _disk_full)
    assert main(["train", *cli_args(corpus, run_dir, "trainer.max_steps=4")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"stt: error: {run_dir}/last.pt: cannot write checkpoint (No space left on device)"
    )
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data
        assert load_checkpoint(run_dir / name)["step"] == 2
    assert _leftovers(run_dir) == []


def test_a_read_only_run_dir_is_one_line(corpus, trained, tmp_path, monkeypatch, capsys):
    run_dir, _ = _copy(trained, tmp_path)
    if os.geteuid() == 0:  # root writes through chmod 0o555: refuse the first write instead

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr("stt.training.trainer.OmegaConf.save", refuse)
    else:
        run_dir.chmod(0o555)
    capsys.readouterr()
    try:
        code = main(["train", *cli_args(corpus, run_dir, "trainer.max_steps=4")])
    finally:
        run_dir.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert (
        err.strip().splitlines()[-1] == f"stt: error: {run_dir}: cannot write (Permission denied)"
    )


def test_ctrl_c_while_checkpointing_is_a_clean_interrupt_after_a_complete_checkpoint(
    corpus, trained, tmp_path, monkeypatch, capsys, python_sigint
):
    run_dir, _ = _copy(trained, tmp_path)
    capsys.readouterr()
    # The signal arrives inside torch's C++ writer, which turned KeyboardInterrupt into a
    # RuntimeError traceback and a half-written temporary file.
    _patch_writes(monkeypatch, lambda: signal.raise_signal(signal.SIGINT))
    every_step = ("trainer.max_steps=4", "trainer.checkpoint_every_steps=1")
    assert main(["train", *cli_args(corpus, run_dir, *every_step)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "stt: interrupted"
    assert load_checkpoint(run_dir / "last.pt")["step"] == 3  # the write that was interrupted
    assert _leftovers(run_dir) == []


# A process that saves one more checkpoint and is killed (SIGKILL) halfway through the file.
_KILLED_MID_WRITE = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from stt import checkpoint

    path = sys.argv[1]
    state = checkpoint.load_checkpoint(path)
    real_save = torch.save

    def save_half_then_die(obj, handle):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: buffer.tell() // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_half_then_die
    checkpoint.save_checkpoint(path, {**state, "step": state["step"] + 1})
    """
)


def test_kill_9_mid_checkpoint_write_keeps_the_previous_one_and_resume_cleans_up(
    corpus, trained, tmp_path, caplog
):
    run_dir, before = _copy(trained, tmp_path)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_WRITE, str(run_dir / "last.pt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [partial] = _leftovers(run_dir)
    assert partial.startswith(".last.pt.") and (run_dir / partial).stat().st_size > 0
    assert (run_dir / "last.pt").read_bytes() == before["last.pt"]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2

    with caplog.at_level("INFO", logger="stt.train"):
        assert main(["train", *cli_args(corpus, run_dir, "trainer.max_steps=3")]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("resumed from" in m and m.endswith("step 2") for m in messages)
    assert any(f"removed {run_dir / partial}" in m for m in messages)
    assert _leftovers(run_dir) == []
    assert load_checkpoint(run_dir / "last.pt")["step"] == 3


def test_killed_run_resumes_from_its_last_checkpoint(corpus, tmp_path):
    run_dir = tmp_path / "killed"
    every = 2
    options = (f"trainer.checkpoint_every_steps={every}", "trainer.log_every_steps=1")
    long_run = stt_train(corpus, run_dir, "trainer.max_steps=400", *options)
    proc = subprocess.Popen(long_run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        last, best = run_dir / "last.pt", run_dir / "best.pt"
        if best.exists() and last.exists() and load_checkpoint(last)["step"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(run_dir / "last.pt")["step"]
    read_model(run_dir / "best.pt")
    trained_to = max(step for step, _ in read_metrics(run_dir / "metrics.csv")["train/loss"])
    assert 2 <= killed_at <= trained_to <= killed_at + every  # at most one interval lost

    resumed = subprocess.run(
        stt_train(corpus, run_dir, "trainer.max_steps=12", *options),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {run_dir / 'last.pt'} at epoch" in resumed.stderr
    assert f"step {killed_at}\n" in resumed.stderr
    read_model(run_dir / "best.pt")
    assert load_checkpoint(run_dir / "last.pt")["step"] == 12
    # (That the resumed weights are the uninterrupted run's, bit for bit, is
    # test_train.py::test_resume_continues_exactly_where_it_stopped.)
