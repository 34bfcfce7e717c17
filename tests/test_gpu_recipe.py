"""scripts/gpu/ on tiny data, on the CPU: the corpora packed as Opus parts under a size cap with
manifests that read from anywhere, the device side's ``--ready`` step (what arrived, absolute
paths; a missing part named), and train_on_gpu.sh end to end: the throughput benchmark, the
recipe's train and anneal stages, and the weights and logs it packs for the trip back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from stt.checkpoint import model_state, read_model, save_checkpoint
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "gpu"))
import pack_data  # noqa: E402

PART_MB = 0.006  # ~6 KB: a few one-second files per part


def fake_work(root: Path) -> Path:
    """A WORK folder as the recipe's data stage leaves it: train and dev splits of each corpus
    (the Opus ones' train split under decoded/), one-second utterances."""
    rng = np.random.default_rng(0)
    for corpus in pack_data.CORPORA:
        for split, count in (("train", 4), ("dev", 3)):
            folder = root / "audio" / corpus / split
            folder.mkdir(parents=True)
            rows = []
            for i in range(count):
                path = folder / f"{i}.wav"
                sf.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
                rows.append(Utterance(path, 1.0, "a cat sat", {"speaker": f"{corpus}{i % 2}"}))
            manifest = root / corpus / "dev.jsonl"
            if split == "train":
                manifest = pack_data.train_manifest(root, corpus)
            write_manifest(manifest, rows)
    return root


def test_parts_stay_under_the_cap_and_the_manifests_read_from_anywhere(tmp_path, capsys):
    work, out = fake_work(tmp_path / "work"), tmp_path / "pack" / ".gpu"
    assert pack_data.main([str(work), str(out), "--part-mb", str(PART_MB), "--dev-limit", "2"]) == 0
    info = json.loads((out / "parts.json").read_text())
    parts = sorted(out.glob("part-*"))
    assert len(parts) >= 3 and len(info["calls"]) == len(parts) + 1
    assert info["calls"][-1] == [".gpu/work", ".gpu/whl", ".gpu/init"]
    for part in parts:
        assert sum(f.stat().st_size for f in part.rglob("*.ogg")) <= PART_MB * 2**20
    # Six train splits of 4 and six dev samples of 2, every path relative to its manifest.
    manifests = sorted((out / "work").rglob("*.jsonl"))
    assert len(manifests) == 12
    for manifest in manifests:
        assert not any(json.loads(line)["audio_filepath"].startswith("/")
                       for line in manifest.read_text().splitlines())  # fmt: skip
    assert len(read_manifest(out / "work" / "synth" / "dev.jsonl")) == 2
    assert len(read_manifest(out / "work" / "decoded" / "librispeech" / "train.jsonl")) == 4

    # On "the device machine": the folder elsewhere, one part not sent.
    device = tmp_path / "device" / ".gpu"
    shutil.copytree(out, device)
    shutil.rmtree(device / "part-1")
    capsys.readouterr()
    assert pack_data.main(["--ready", str(device)]) == 0
    err = capsys.readouterr().err
    assert "decoded/librispeech/train.jsonl: " in err and "missing (a part not sent?)" in err
    ready = read_manifest(device / "ready" / "decoded" / "librispeech" / "train.jsonl")
    assert ready and all(u.audio_filepath.is_absolute() for u in ready)
    assert all(u.audio_filepath.exists() for u in ready)
    assert len(read_manifest(device / "ready" / "synth" / "dev.jsonl")) == 2


def test_a_missing_manifest_is_one_error_line(tmp_path, capsys):
    assert pack_data.main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stt: error: ") and "librispeech" in err and "\n" not in err


def test_train_on_gpu_runs_the_recipe_and_packs_what_comes_back(tmp_path):
    """Two models side by side, as on the GPU: ``small`` warm-started from the shipped default
    (its shape wins), and the accent base grown to 4 stacks from a tiny "previous default"
    without speechocean762."""
    work, g = fake_work(tmp_path / "work"), tmp_path / "device" / ".gpu"
    assert pack_data.main([str(work), str(g), "--part-mb", "1", "--dev-limit", "2"]) == 0
    tiny = WaveNetCTC(ModelConfig(channels=16, kernel_size=3, dilations=[1, 2, 4], stacks=1,
                                  head_channels=16), len(Vocabulary.default()))  # fmt: skip
    save_checkpoint(g / "init" / "previous_default.pt", model_state(tiny, Vocabulary.default()))
    out, results = tmp_path / "out", tmp_path / "results"
    env = {**os.environ, "G": str(g), "OUT": str(out), "PY": sys.executable,
           "MODELS": "small accent-base", "MIN": "1", "ANNEAL_STEPS": "2", "BATCH": "4",
           "EVAL": "2", "PEEK": "0", "BENCH_CONFIGS": "small", "BENCH_STEPS": "2",
           "STT_BENCH_RESULTS": str(results),
           "TRAIN_OVERRIDES": "trainer.max_epochs=1 trainer.device=cpu"}  # fmt: skip
    result = subprocess.run(["bash", "scripts/gpu/train_on_gpu.sh"], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "bench exit 0" in result.stdout
    assert "small exit 0" in result.stdout and "accent-base exit 0" in result.stdout
    bench = json.loads((out / "train_gpu.json").read_text())
    assert [row["config"] for row in bench["results"]] == ["small"]
    back = tmp_path / "back"
    for name in ("small", "accent-base"):
        with tarfile.open(out / f"{name}.tar.gz") as tar:
            names = set(tar.getnames())
            tar.extractall(back, filter="data")
        assert {f"{name}/best-weights.pt", f"{name}/{name}.log", f"{name}/metrics.csv",
                f"{name}-anneal/result.json"} <= names  # fmt: skip
        annealed = json.loads((back / f"{name}-anneal" / "result.json").read_text())
        assert annealed["step"] == 2 and "librispeech/dev" in annealed["dev"]
    shipped = read_model(ROOT / "stt" / "assets" / "default" / "model.pt")[0].config
    assert read_model(back / "small" / "best-weights.pt")[0].config.stacks == shipped.stacks
    grown = read_model(back / "accent-base" / "best-weights.pt")[0].config
    assert (grown.channels, grown.stacks) == (16, 4)
    annealed = json.loads((back / "accent-base-anneal" / "result.json").read_text())
    assert "speechocean/dev" not in annealed["dev"]
