"""The shipped model's recipe on tiny data: scripts/prepare_data.sh, the training stage of
scripts/train_default_model.sh, scripts/build_lm.sh and scripts/package_model.sh, run as the
README says, on a fake ../shared/data of a few seconds per corpus."""

from __future__ import annotations

import csv
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from stt.checkpoint import load_checkpoint, read_model
from stt.data.manifest import read_manifest
from tests.conftest import TINY_MODEL, requires_synth_tools

ROOT = Path(__file__).resolve().parent.parent
STT = f"{sys.executable} -m stt"
LJ_DEV_TEXT = "the commission is confident"


def _corpus(root: Path, name: str, rows: list[tuple[str, str, str | None]], fmt: dict) -> None:
    rng = np.random.default_rng(len(name))
    (root / name / "audio").mkdir(parents=True)
    with (root / name / "manifest.jsonl").open("w") as f:
        for file, text, speaker in rows:
            wave = (0.1 * rng.standard_normal(16000)).astype(np.float32)
            sf.write(root / name / "audio" / file, wave, 16000, **fmt)
            row = {"audio_filepath": f"audio/{file}", "duration": 1.0, "text": text}
            if speaker:
                row["speaker"] = speaker
            f.write(json.dumps(row) + "\n")


def fake_shared(root: Path) -> Path:
    opus = {"format": "OGG", "subtype": "OPUS"}
    _corpus(
        root,
        "an4_train",
        [
            (f"{s}_an{i}-{s}-b.flac", "yes", None)
            for s in ("fash", "fbbh", "fclc")
            for i in range(2)
        ],
        {},
    )
    _corpus(
        root,
        "fsdd_train",
        [
            (f"{d}_{s}_{i}.flac", "zero", None)
            for s in ("george", "lucas")
            for d in (0,)
            for i in range(3)
        ],
        {},
    )
    _corpus(
        root,
        "librispeech_mini",
        [
            (f"{s}-1-000{i}.opus", "the old man read a book", s)
            for s in ("11", "22", "33")
            for i in range(2)
        ],
        opus,
    )
    _corpus(
        root,
        "speechocean762",
        [
            (f"so_{s}_{i}.opus", "we call it bear", f"so_{s}")
            for s in ("1", "2", "3")
            for i in range(2)
        ],
        opus,
    )
    _corpus(root, "ljspeech", [("LJ001-0001.opus", "printing in the only sense", "lj"),
                               ("LJ002-0001.opus", "the old prison of newgate", "lj"),
                               ("LJ050-0276.opus", LJ_DEV_TEXT, "lj")], opus)  # fmt: skip
    (root / "lm_text").mkdir()
    with lzma.open(root / "lm_text" / "ljspeech.txt.xz", "wt") as f:
        f.write(f"a sentence to keep for the model\n{LJ_DEV_TEXT}\nanother one to keep here\n")
    return root


def run(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env={**os.environ,
                            **env}, capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@requires_synth_tools
def test_the_recipe_runs_on_tiny_data_and_reruns_as_a_no_op(tmp_path):
    shared, work = fake_shared(tmp_path / "shared"), tmp_path / "work"
    env = {"SHARED": str(shared), "SYNTH_HOURS": "0.01", "STT": STT, "PY": sys.executable,
           "LM_MEMORY": "100M"}  # fmt: skip

    # Data: every corpus split speaker-disjoint (LJSpeech by book), all validated.
    run("train_default_model.sh", str(work), "small", env={**env, "STAGES": "data"})
    for name in ("an4", "fsdd", "librispeech", "speechocean", "ljspeech"):
        train = read_manifest(work / name / "train.jsonl")
        dev = read_manifest(work / name / "dev.jsonl")
        assert train and dev, name
        assert not {u.speaker for u in train} & {u.speaker for u in dev}, name
    assert [u.text for u in read_manifest(work / "ljspeech" / "dev.jsonl")] == [LJ_DEV_TEXT]
    decoded = read_manifest(work / "decoded" / "librispeech" / "train.jsonl")
    assert all(u.audio_filepath.suffix == ".flac" and u.audio_filepath.exists() for u in decoded)
    again = run("prepare_data.sh", str(work), env=env)
    assert "already validated" in again.stdout and "up to date" in again.stdout

    # Training stage: the recipe's own stt train command, with a tiny model for one epoch.
    overrides = " ".join([*TINY_MODEL, "trainer.max_epochs=1", "data.num_workers=0",
                          "trainer.tensorboard=false", "trainer.log_every_steps=1"])  # fmt: skip
    trained = run(
        "train_default_model.sh",
        str(work),
        "small",
        env={
            **env,
            "STAGES": "train anneal",
            "INIT_FROM": "none",
            "ANNEAL_STEPS": "2",
            "TRAIN_OVERRIDES": overrides,
        },
    )
    result = json.loads((work / "runs" / "small-real" / "result.json").read_text())
    assert result["epoch"] == 1 and (work / "runs" / "small-real" / "best.pt").exists()
    assert set(result["dev"]) >= {"librispeech/dev", "speechocean/dev", "ljspeech/dev"}
    # Anneal: a second run from the main run's last checkpoint, its rate decayed on a cosine.
    annealed = work / "runs" / "small-real-anneal"
    assert f"initialised from {annealed / 'init.pt'}" in trained.stdout + trained.stderr
    assert (annealed / "best.pt").exists() and (annealed / "init.pt").exists()
    rates = [float(row["value"]) for row in csv.DictReader(open(annealed / "metrics.csv"))
             if row["name"] == "train/lr"]  # fmt: skip
    assert rates and rates[-1] < rates[0]

    # Grow: the trained model with a second dilation stack (same function) and no dropout,
    # annealed from there at a lower peak rate.
    grown_run = work / "runs" / "grown"
    run("train_default_model.sh", str(work), "small", env={
        **env, "STAGES": "grow anneal", "RUN": str(grown_run), "GROW_STACKS": "2",
        "GROW_DROPOUT": "0", "ANNEAL_LR": "3e-4",
        "INIT_FROM": str(work / "runs" / "small-real" / "best.pt"), "ANNEAL_STEPS": "2",
        "TRAIN_OVERRIDES": overrides})  # fmt: skip
    start = read_model(grown_run / "grown.pt")[0]
    assert start.config.stacks == 2 and start.config.channels == 16
    assert start.config.dropout == 0.0
    grown_best = read_model(work / "runs" / "grown-anneal" / "best.pt")[0]
    assert grown_best.config.stacks == 2 and grown_best.config.dropout == 0.0
    rates = [float(row["value"]) for row in csv.DictReader(open(work / "runs" / "grown-anneal"
             / "metrics.csv")) if row["name"] == "train/lr"]  # fmt: skip
    assert rates and 0 < max(rates) <= 3e-4

    # LM: built from lm_text minus the dev sentences, plus the train transcripts.
    run("build_lm.sh", str(work), env=env)
    external = (work / "lm_text" / "external.txt").read_text()
    assert LJ_DEV_TEXT not in external and "a sentence to keep for the model" in external
    assert "the old man read a book" in (work / "lm_text" / "transcripts.txt").read_text()
    info = json.loads((work / "lm" / "lm.json").read_text())
    assert info["order"] == 4 and info["quantize_bits"] == 8
    assert (work / "lm" / "lm.bin").stat().st_size > 0

    # Package: alpha/beta tuned for BEAM_WIDTH on every dev split, fp16 weights, decoder.yaml
    # (sharing the default's LM) and stt eval reports.
    assets, report = tmp_path / "assets", tmp_path / "report"
    best = work / "runs" / "small-real-anneal" / "best.pt"
    run("package_model.sh", str(best), str(assets), str(work), str(report),
        env={**env, "BEAM_WIDTH": "4"})  # fmt: skip
    tuned = yaml.safe_load((assets / "decoder.yaml").read_text())
    assert tuned["kind"] == "beam" and tuned["beam_width"] == 4
    assert tuned["alpha"] in (0.5, 0.7, 0.9) and tuned["beta"] in (1.5, 2.5, 3.5, 4.5)
    assert (assets / tuned["lm"]).resolve() == (ROOT / "stt/assets/default/lm.bin").resolve()
    packaged = load_checkpoint(assets / "model.pt")
    source = load_checkpoint(best)
    assert (packaged["trained"]["epoch"], packaged["trained"]["step"]) == (
        source["epoch"], source["step"])  # fmt: skip
    assert all(v.dtype == torch.float16 for v in packaged["model"].values()
               if v.is_floating_point())  # fmt: skip
    sets = json.loads((report / "report.json").read_text())["decoders"]["beam+lm"]["sets"]
    assert {"librispeech/dev", "synth/test", "examples/references"} <= set(sets)
