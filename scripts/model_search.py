#!/usr/bin/env python
"""Model search (issue 12): WaveNet sizes and shapes compared under equal CPU wall-clock budgets.

Every candidate starts from the shipped default, grown into its shape with the same function
(:mod:`stt.training.grow`), so a bigger model begins where the default stands instead of from
noise (on 2 CPU cores, a from-scratch model of any size would still be learning to emit
characters when its budget ran out). Each then gets the recipe's anneal stage
(``scripts/train_default_model.sh`` ``STAGES=anneal``: all real train splits plus synthetic
speech, fresh AdamW, cosine from 4.5e-4 to 2%) for as many steps as fill the same minutes at
its own speed: the control, ``medium``, runs ``--medium-steps``, and the minutes it takes are the
budget; each other candidate gets the steps that fill those minutes, from ``medium``'s real
seconds per step scaled by the candidate's measured training-step cost relative to ``medium``.

Candidates:

* ``medium``: the shipped size (1.69 M, 15 blocks x 96 channels), trained on (the control);
* ``wide``: 15 blocks x 160 channels (4.6 M), the 4-8 M class;
* ``deep``: 20 blocks x 96 channels (2.2 M, 1.33x the FLOPs), expected better per FLOP than
  width (capacity grows linearly with depth, quadratically in FLOPs with width).

Then, for each: dev loss, greedy and beam + LM WER/CER on all six dev splits (``stt eval``,
the default's LM and decoder settings, not re-tuned per candidate), parameters, receptive field,
FLOPs per audio second, and batch-1 RTFx of the fused path on 2 cores (greedy and beam + LM,
best of 3 interleaved repeats, all candidates in one process). Eligible to be the default: RTFx
>= 300 greedy (the network's speed; the >= 100 beam + LM target is recorded too, but most of a
beam search's time is the decoder's, the same for every candidate). Writes
``bench/results/model_search.json``, ``model_search.png`` (mean dev WER vs RTFx) and each
candidate's ``stt eval`` report in ``bench/results/model_search/NAME/``.

    .venv/bin/python scripts/model_search.py [--work data_cache] [--medium-steps 600]
        [--only medium,wide] [--report]

Resumable: finished stages (a grown start, a trained run, an evaluation) are kept; rerun to go
on. ``--report`` only measures speed and assembles the results of the runs that finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_infer import flops_summary, load_test_set, time_end_to_end  # noqa: E402
from machine import RESULTS_DIR, load_average, write_results  # noqa: E402

from stt.checkpoint import read_model  # noqa: E402
from stt.decoding import DecoderConfig, build_decoder  # noqa: E402
from stt.training.grow import grow, grow_checkpoint  # noqa: E402
from stt.transcribe import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "stt" / "assets" / "default"
DEV_SETS = ("librispeech", "speechocean", "ljspeech", "an4", "fsdd", "synth")
TARGET_RTFX = {"greedy": 300.0, "beam": 100.0}
REPORT_NAMES = {"greedy": "greedy", "beam": "beam+lm"}  # the decoders' names in stt eval's report


@dataclass(frozen=True)
class Candidate:
    name: str
    channels: int
    stacks: int
    why: str


CANDIDATES = (
    Candidate("medium", 96, 3, "the shipped size, trained on: the control"),
    Candidate("wide", 160, 3, "4-8 M class: 1.7x the channels"),
    Candidate("deep", 96, 4, "a fourth dilation stack: expected better per FLOP than width"),
)


def run(args: list[str], env: dict | None = None) -> None:
    print("+", shlex.join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT, env={**os.environ, **(env or {})})


def run_dir(work: Path, candidate: Candidate) -> Path:
    return work / "runs" / f"search-{candidate.name}"


def anneal_dir(work: Path, candidate: Candidate) -> Path:
    """Where the recipe's anneal stage trains the candidate (``RUN-anneal``)."""
    return Path(f"{run_dir(work, candidate)}-anneal")


def trained(work: Path, candidate: Candidate) -> dict | None:
    """The finished anneal run's result.json, or None."""
    path = anneal_dir(work, candidate) / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("stop_reason", "").startswith("max_steps") else None


def ensure_start(work: Path, candidate: Candidate) -> None:
    """``RUN/grown.pt``: the default grown into the candidate's shape (the anneal stage's start)."""
    start = run_dir(work, candidate) / "grown.pt"
    if not start.is_file():
        grown = grow_checkpoint(DEFAULT / "model.pt", start, candidate.channels, candidate.stacks)
        print(f"{candidate.name}: {grown}")


def step_seconds(candidates: list[Candidate], repeats: int = 3) -> dict[str, float]:
    """Seconds of one training step (forward + CTC + backward, 8 x 15 s) per candidate, medians
    of interleaved repeats in this process: the relative costs the budgets are scaled by."""
    model, vocab = read_model(DEFAULT / "model.pt")
    models = {c.name: grow(model.float(), c.channels, c.stacks).train() for c in candidates}
    torch.manual_seed(0)
    waves, lengths = torch.randn(8, 15 * 16000) * 0.1, torch.full((8,), 15 * 16000)
    targets = torch.randint(1, len(vocab), (8, 150))
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats + 1):  # the first round warms up
        for name, net in models.items():
            start = time.perf_counter()
            log_probs, out_lengths = net(waves, lengths)
            loss = torch.nn.functional.ctc_loss(
                log_probs.transpose(0, 1), targets, out_lengths, torch.full((8,), 150)
            )
            loss.backward()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t[1:]), 3) for name, t in times.items()}


def budget_steps(control: dict, costs: dict[str, float], name: str) -> int:
    """The steps that fill the control's minutes at candidate ``name``'s cost per step: the
    control's steps over the candidate's cost relative to ``medium``'s."""
    return round(control["step"] * costs["medium"] / costs[name])


def ensure_trained(work: Path, candidate: Candidate, steps: int) -> dict:
    """The candidate's anneal run (resumed if interrupted), its result.json."""
    done = trained(work, candidate)
    if done:
        return done
    ensure_start(work, candidate)
    print(f"{candidate.name}: training {steps} steps", flush=True)
    run(
        ["bash", "scripts/train_default_model.sh", str(work)],
        env={"STAGES": "anneal", "RUN": str(run_dir(work, candidate)),
             "ANNEAL_STEPS": str(steps)},
    )  # fmt: skip
    return trained(work, candidate)


def ensure_evaluated(work: Path, candidate: Candidate) -> dict:
    """``stt eval`` of the candidate's best checkpoint on every dev split, greedy and beam."""
    anneal = anneal_dir(work, candidate)
    out = anneal / "eval"
    write_default_decoder(anneal / "decoder.yaml")  # stt eval and load_model read it
    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    dev = [str(work / name / "dev.jsonl") for name in DEV_SETS]
    run([sys.executable, "-m", "stt", "eval", str(anneal / "best.pt"), *dev,
         "--decoders", "greedy", "beam", "--out", str(out), "--no-progress"])  # fmt: skip
    return json.loads((out / "report.json").read_text())


def write_default_decoder(path: Path) -> None:
    """The shipped default's beam settings, with its LM named by absolute path."""
    from omegaconf import OmegaConf

    settings = OmegaConf.load(DEFAULT / "decoder.yaml")
    settings.lm = str(DEFAULT / settings.lm)
    settings.unigrams = str(DEFAULT / settings.unigrams)
    OmegaConf.save(settings, path)


def speeds(work: Path, names: list[str], utterances: int, repeats: int = 3) -> dict[str, dict]:
    """Batch-1 RTFx of each trained candidate, fused, greedy and beam + LM, interleaved."""
    _, waveforms = load_test_set(work / "librispeech" / "dev.jsonl", utterances)
    audio_seconds = sum(len(w) for w in waveforms) / 16000
    batches = [[w] for w in waveforms]
    setups = {}
    for name in names:
        # load_model: the network, its vocabulary and the decoder.yaml written beside it
        transcriber = load_model(str(best_checkpoint(work, name)))
        model, vocab = transcriber.model, transcriber.vocab
        setups[name] = (model, {
            "greedy": build_decoder(vocab, DecoderConfig(kind="greedy")),
            "beam": build_decoder(vocab, transcriber.decoder_config),
        })  # fmt: skip
        for decoder in setups[name][1].values():  # warm-up: pools, caches, the LM's pages
            time_end_to_end(model, decoder, batches[:2], True)
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for name, (model, decoders) in setups.items():
            for kind, decoder in decoders.items():
                wall = time_end_to_end(model, decoder, batches, True)
                seconds.setdefault((name, kind), []).append(wall)
    for _, decoders in setups.values():
        for decoder in decoders.values():
            decoder.close()
    result = {}
    for name in names:
        row = {"audio_seconds": round(audio_seconds, 1)}
        for kind in ("greedy", "beam"):
            walls = seconds[(name, kind)]
            row[f"rtfx_{kind}"] = round(audio_seconds / min(walls), 1)
            row[f"rtfx_{kind}_median"] = round(audio_seconds / statistics.median(walls), 1)
        result[name] = row
    return result


def best_checkpoint(work: Path, name: str) -> Path:
    candidate = next(c for c in CANDIDATES if c.name == name)
    return anneal_dir(work, candidate) / "best.pt"


def mean_over_sets(report: dict, decoder: str, metric: str) -> float:
    sets = report["decoders"][REPORT_NAMES[decoder]]["sets"]
    return round(statistics.fmean(sets[f"{name}/dev"][metric] for name in DEV_SETS), 4)


def summary(work: Path, candidate: Candidate, result: dict, report: dict, costs: dict) -> dict:
    """One candidate's row of model_search.json."""
    model, _ = read_model(best_checkpoint(work, candidate.name))
    row = {
        **asdict(candidate),
        "description": model.describe(),
        "parameters": model.num_parameters(),
        "receptive_field_seconds": round(model.receptive_field_seconds, 2),
        "flops_per_audio_second": flops_summary(model)["total"],
        "step_cost_vs_medium": round(costs[candidate.name] / costs["medium"], 2),
        "train_steps": result["step"],
        "train_wall_minutes": result["wall_minutes"],
        "dev_loss": {k: round(v["loss"], 4) for k, v in result["dev"].items()},
        "dev_loss_mean": round(result["best_metric"], 4),
    }
    for decoder in ("greedy", "beam"):
        sets = report["decoders"][REPORT_NAMES[decoder]]["sets"]
        row[decoder] = {
            "wer_mean": mean_over_sets(report, decoder, "wer"),
            "cer_mean": mean_over_sets(report, decoder, "cer"),
            "sets": {k: {m: round(v[m], 4) for m in ("wer", "cer")} | {"wer_95ci": v["wer_95ci"]}
                     for k, v in sets.items()},
        }  # fmt: skip
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, decoder in zip(axes, ("greedy", "beam"), strict=True):
        for row in rows:
            x, y = row[f"rtfx_{decoder}"], 100 * row[decoder]["wer_mean"]
            ax.scatter(x, y, s=30 + row["parameters"] / 5e4)
            ax.annotate(f"{row['name']} ({row['parameters'] / 1e6:.1f} M)", (x, y),
                        textcoords="offset points", xytext=(5, 5))  # fmt: skip
        ax.axvline(TARGET_RTFX[decoder], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(
            f"RTFx, batch 1, fused, 2 cores ({decoder}{' + LM' if decoder == 'beam' else ''})"
        )
        ax.set_ylabel("mean dev WER over six splits (%)")
        ax.set_title(f"{decoder}: dashed = default's speed floor")
        ax.grid(alpha=0.3)
    fig.suptitle("Model search: equal CPU budgets, all grown from the shipped default")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data_cache")
    parser.add_argument(
        "--medium-steps",
        type=int,
        default=600,
        help="steps of the control, whose wall time is every candidate's budget (600: ~30 "
        "minutes on 2 cores)",
    )
    parser.add_argument("--only", default="", help="comma-separated candidates to train now")
    parser.add_argument("--report", action="store_true", help="no training: measure and report")
    parser.add_argument(
        "--utterances", type=int, default=40, help="LibriSpeech dev utterances timed"
    )
    args = parser.parse_args()  # fmt: skip
    work = args.work.resolve()
    costs_path = work / "runs" / "search-step-costs.json"
    if not costs_path.is_file():
        costs_path.parent.mkdir(parents=True, exist_ok=True)
        costs_path.write_text(json.dumps(step_seconds(list(CANDIDATES))) + "\n")
    costs = json.loads(costs_path.read_text())
    print("seconds per training step (8 x 15 s):", costs, flush=True)
    wanted = [c for c in CANDIDATES if not args.only or c.name in args.only.split(",")]
    if not args.report:
        control = ensure_trained(work, CANDIDATES[0], args.medium_steps)
        for candidate in wanted:
            if candidate.name != "medium":
                ensure_trained(work, candidate, budget_steps(control, costs, candidate.name))
            ensure_evaluated(work, candidate)
    done = [c for c in CANDIDATES if trained(work, c) and
            (anneal_dir(work, c) / "eval" / "report.json").is_file()]  # fmt: skip
    load_start = load_average()
    measured = speeds(work, [c.name for c in done], args.utterances)
    rows = []
    for c in done:
        row = summary(work, c, trained(work, c), ensure_evaluated(work, c), costs)
        row.update(measured[c.name])
        # The network's speed decides: the beam search's share is the decoder's, the same for
        # every candidate (and the beam target is the decoder's to meet).
        row["meets_greedy_speed"] = row["rtfx_greedy"] >= TARGET_RTFX["greedy"]
        row["meets_beam_speed"] = row["rtfx_beam"] >= TARGET_RTFX["beam"]
        row["eligible_as_default"] = row["meets_greedy_speed"]
        rows.append(row)
    eligible = [r for r in rows if r["eligible_as_default"]]
    best = min(eligible, key=lambda r: r["beam"]["wer_mean"])["name"] if eligible else None
    results = {
        "benchmark": "model_search",
        "command": "python scripts/model_search.py " + shlex.join(sys.argv[1:]),
        "budget_minutes": (trained(work, CANDIDATES[0]) or {}).get("wall_minutes"),
        "recipe": "each grown from stt/assets/default/model.pt (stt.training.grow), then "
                  "scripts/train_default_model.sh STAGES=anneal (all train splits, cosine "
                  "4.5e-4 -> 2%) for the steps that fill the budget at its own speed",
        "seconds_per_step_8x15s": costs,
        "decoder": "the shipped default's decoder.yaml (not re-tuned per candidate)",
        "speed_targets_rtfx": TARGET_RTFX,
        "load_average": {"start": load_start, "end": load_average()},
        "candidates": rows,
        "best_eligible": best,
    }  # fmt: skip
    for r in rows:
        wer = {k: round(100 * r[k]["wer_mean"], 1) for k in ("greedy", "beam")}
        print(f"{r['name']}: mean dev WER {wer}, RTFx {r['rtfx_greedy']} / {r['rtfx_beam']}")
    write_results("model_search", results)
    plot(rows, RESULTS_DIR / "model_search.png")
    publish_reports(work, done)


def publish_reports(work: Path, done: list[Candidate]) -> None:
    """Each candidate's ``stt eval`` report beside the JSON (bench/results/model_search/NAME/),
    so its figures can be checked set by set."""
    for candidate in done:
        folder = RESULTS_DIR / "model_search" / candidate.name
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "report.md"):
            shutil.copy(anneal_dir(work, candidate) / "eval" / name, folder / name)


if __name__ == "__main__":
    main()
