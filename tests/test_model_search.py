"""scripts/model_search.py from its command line on tiny data: `--report` scores the trained
candidates it finds (stt eval), times them and writes the JSON, the figure and each candidate's
report; a candidate's training budget is the control's steps over its relative cost. (The
training runs themselves are the benchmark, not a test.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from stt.checkpoint import model_state, save_checkpoint
from stt.data.manifest import Utterance, write_manifest
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import machine  # noqa: E402  (scripts/machine.py, which the script writes results with)
import model_search  # noqa: E402


def tiny_work_dir(root: Path) -> Path:
    """Six dev splits of two tone-and-noise utterances, and a 'trained' control run."""
    rng = np.random.default_rng(0)
    for name in model_search.DEV_SETS:
        folder = root / name
        folder.mkdir(parents=True)
        utterances = []
        for i in range(2):
            path = folder / f"{i}.wav"
            t = np.arange(16000) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.05 * rng.standard_normal(16000)
            sf.write(path, wave.astype(np.float32), 16000)
            utterances.append(Utterance(path, 1.0, "a cat", {"speaker": f"s{i}"}))
        write_manifest(folder / "dev.jsonl", utterances)
    control = model_search.CANDIDATES[0]
    run = model_search.anneal_dir(root, control)
    run.mkdir(parents=True)
    config = ModelConfig(channels=8, kernel_size=3, dilations=[1, 2], stacks=1, stride=2,
                         head_channels=8)  # fmt: skip
    vocab = Vocabulary.default()
    save_checkpoint(run / "best.pt", model_state(WaveNetCTC(config, len(vocab)).eval(), vocab))
    dev = {f"{name}/dev": {"loss": 2.0} for name in model_search.DEV_SETS}
    result = {"stop_reason": "max_steps reached (10)", "step": 10, "wall_minutes": 0.5,
              "best_metric": 2.0, "dev": dev}  # fmt: skip
    (run / "result.json").write_text(json.dumps(result))
    costs = {"medium": 1.0, "wide": 2.0, "deep": 1.25}
    (root / "runs" / "search-step-costs.json").write_text(json.dumps(costs))
    return root


def test_report_scores_times_and_writes_what_it_found(tmp_path, monkeypatch, capsys):
    work = tiny_work_dir(tmp_path / "work")
    model_search.ensure_evaluated(work, model_search.CANDIDATES[0])  # stt eval, greedy + beam
    results = tmp_path / "results"
    monkeypatch.setattr(machine, "RESULTS_DIR", results)
    monkeypatch.setattr(model_search, "RESULTS_DIR", results)
    argv = ["model_search.py", "--work", str(work), "--report", "--utterances", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    model_search.main()
    data = json.loads((results / "model_search.json").read_text())
    (row,) = data["candidates"]  # only the control was trained
    assert row["name"] == "medium" and row["train_steps"] == 10
    report = json.loads((results / "model_search" / "medium" / "report.json").read_text())
    for decoder, label in model_search.REPORT_NAMES.items():
        sets = report["decoders"][label]["sets"]
        expected = np.mean([sets[f"{n}/dev"]["wer"] for n in model_search.DEV_SETS])
        assert row[decoder]["wer_mean"] == round(expected, 4)
        assert row[f"rtfx_{decoder}"] > 0
    assert row["eligible_as_default"] == (row["rtfx_greedy"] >= 300)
    assert data["budget_minutes"] == 0.5
    assert (results / "model_search.png").stat().st_size > 0
    assert "medium: mean dev WER" in capsys.readouterr().out


def test_a_candidates_steps_fill_the_controls_time_at_its_own_cost():
    control = {"step": 600}
    costs = {"medium": 1.2, "wide": 2.4, "deep": 1.5}
    assert model_search.budget_steps(control, costs, "medium") == 600
    assert model_search.budget_steps(control, costs, "wide") == 300
    assert model_search.budget_steps(control, costs, "deep") == 480
