"""`stt train`: loss falls, exact resume, plateau stop, DDP, checkpoints (faults: test_faults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from stt.checkpoint import load_checkpoint, read_model
from stt.config import compose, to_dataclass
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import CheckpointError
from stt.training.config import TrainConfig
from stt.training.metrics_log import read_metrics
from stt.training.stopping import PlateauStopper
from stt.training.trainer import train, weights_fingerprint
from tests.conftest import TINY_MODEL, requires_synth_tools, tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """About 40 s of synthetic speech in train and dev splits."""
    out = tmp_path_factory.mktemp("train-corpus")
    return tiny_corpus(out, "the {a} {b} went to the market on a sunny day", seed=2)


def cli_args(corpus: Path, run_dir: Path, *overrides: str) -> list[str]:
    """Overrides for a fast run of the tiny model on the test corpus (CPU, no workers)."""
    return [
        f"run_dir={run_dir}",
        f"data.train=[{corpus / 'train.jsonl'}]",
        f"data.dev=[{corpus / 'dev.jsonl'}]",
        "data.num_workers=0",
        "data.max_batch_seconds=12",
        "optim.lr=3e-3",
        "optim.warmup_steps=5",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        *TINY_MODEL,
        *overrides,
    ]


def config(corpus: Path, run_dir: Path, *overrides: str) -> TrainConfig:
    args = cli_args(corpus, run_dir, "trainer.log_every_steps=1", *overrides)
    return to_dataclass(compose("train", args), TrainConfig)


pytestmark = requires_synth_tools


def test_loss_falls_and_every_output_is_written(corpus, tmp_path):
    result = train(
        config(
            corpus,
            tmp_path / "run",
            "trainer.max_epochs=40",
            "trainer.patience=100",
            "optim.lr=5e-3",
            "augment=none",
        )
    )
    assert result.stop_reason == "max_epochs reached (40)"
    losses = [v for _, v in read_metrics(tmp_path / "run" / "metrics.csv")["train/loss"]]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv", "curves.png", "result.json"):
        assert (tmp_path / "run" / name).exists(), name
    dev = result.dev["train-corpus0/dev"]
    assert set(dev) == {"loss", "wer", "cer"} and dev["loss"] > 0


def test_a_checkpoint_transcribes_on_its_own(corpus, tmp_path):
    train(config(corpus, tmp_path / "run", "trainer.max_steps=3"))
    model, vocab = read_model(tmp_path / "run" / "best.pt")
    log_probs, lengths = model(torch.randn(1, 16000))
    assert log_probs.shape[-1] == len(vocab) and lengths.tolist() == [log_probs.shape[1]]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    for key in ("optimizer", "scheduler", "scaler", "rng", "sampler", "config", "stopper"):
        assert key in state
    assert state["model_config"]["features"]["n_mfcc"] == 40


@pytest.mark.parametrize("on_device", ["false", "true"])  # true: stt.data.on_device batches
def test_resume_continues_exactly_where_it_stopped(corpus, tmp_path, on_device):
    data = f"data.on_device={on_device}"
    full = train(config(corpus, tmp_path / "full", "trainer.max_steps=9", data))
    first = train(config(corpus, tmp_path / "split", "trainer.max_steps=4", data))
    assert first.step == 4
    second = train(config(corpus, tmp_path / "split", "trainer.max_steps=9", data))
    assert second.step == full.step == 9
    a, _ = read_model(tmp_path / "full" / "last.pt")
    b, _ = read_model(tmp_path / "split" / "last.pt")
    assert weights_fingerprint(a) == weights_fingerprint(b)


def stt_train(corpus: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "stt", "train", *cli_args(corpus, run_dir, *overrides)]


def test_plateau_stop_fires_when_the_dev_metric_stops_improving(corpus, tmp_path):
    # With a zero learning rate (and no batch-norm statistics to drift) the model never
    # changes, so the dev loss never improves.
    flat = ("optim.lr=0", "model.norm=layer", "trainer.patience=2", "trainer.max_epochs=50")
    result = train(config(corpus, tmp_path / "flat", *flat))
    assert result.stop_reason.startswith("plateau: dev loss did not improve")
    assert result.epoch == 3  # one best, then two evaluations without improvement
    again = train(config(corpus, tmp_path / "flat", *flat))
    assert again.stop_reason == result.stop_reason and again.step == result.step


def test_plateau_stopper_counts_evaluations_without_enough_improvement():
    stopper = PlateauStopper(patience=2, min_delta=0.01)
    assert stopper.update(1.0)
    assert stopper.update(0.9)
    assert not stopper.update(0.895)  # better, but by less than min_delta
    assert not stopper.should_stop
    assert not stopper.update(float("nan"))
    assert stopper.should_stop and stopper.best == 0.9


def test_ctc_infeasible_utterances_are_dropped_and_counted(corpus, tmp_path):
    utterances = read_manifest(corpus / "train.jsonl")
    long_text = " ".join(["abcdefghij"] * 40)  # 440 characters cannot fit a few seconds
    impossible = Utterance(utterances[0].audio_filepath, 2.0, long_text)
    manifest = write_manifest(tmp_path / "mixed.jsonl", [*utterances, impossible])
    result = train(
        config(corpus, tmp_path / "run", f"data.train=[{manifest}]", "trainer.max_steps=2")
    )
    assert result.dropped_infeasible == 1
    assert result.skipped_steps == 0


def test_unreadable_training_audio_is_dropped_not_fatal(corpus, tmp_path, caplog):
    utterances = read_manifest(corpus / "train.jsonl")
    broken = tmp_path / "broken.flac"
    broken.write_text("not audio")
    manifest = write_manifest(
        tmp_path / "with-bad.jsonl", [*utterances, Utterance(broken, 1.0, "hello there")]
    )
    with caplog.at_level("WARNING"):
        result = train(
            config(corpus, tmp_path / "run", f"data.train=[{manifest}]", "trainer.max_steps=2")
        )
    assert result.step == 2
    assert any("unusable audio" in r.message and "broken.flac" in r.message for r in caplog.records)


def test_corrupt_checkpoint_is_a_clear_error(corpus, tmp_path):
    run_dir = tmp_path / "corrupt"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(
        CheckpointError, match=r"last.pt: not a checkpoint \(not a PyTorch zip archive\)"
    ):
        train(config(corpus, run_dir, "trainer.max_steps=2"))


def test_checkpoint_of_another_model_is_refused(corpus, tmp_path):
    train(config(corpus, tmp_path / "run", "trainer.max_steps=2"))
    with pytest.raises(CheckpointError, match="another model config"):
        train(config(corpus, tmp_path / "run", "trainer.max_steps=4", "model.channels=24"))


def test_no_training_data_is_a_one_line_cli_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stt", "train", f"run_dir={tmp_path}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("stt: error: no training data")


def test_narrowband_copies_from_the_command_line(corpus, tmp_path):
    """``augment.narrowband_prob`` reaches a run from ``stt train`` (its resolved config says
    so), and a value outside [0, 1] is one line naming the key."""
    run_dir = tmp_path / "phone"
    result = subprocess.run(
        stt_train(corpus, run_dir, "augment.narrowband_prob=1.0", "trainer.max_steps=2"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert OmegaConf.load(run_dir / "config.yaml").augment.narrowband_prob == 1.0
    assert json.loads((run_dir / "result.json").read_text())["step"] == 2
    bad = subprocess.run(
        stt_train(corpus, tmp_path / "bad", "augment.narrowband_prob=1.5"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("stt: error:") and "augment.narrowband_prob" in last


def test_two_process_ddp_ranks_end_with_identical_weights(corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *stt_train(corpus, tmp_path / "ddp", "trainer.max_steps=6", "trainer.device=cpu")[1:]],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    fingerprints = json.loads((tmp_path / "ddp" / "result.json").read_text())[
        "rank_weight_fingerprints"
    ]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    init = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert init["step"] == 6
