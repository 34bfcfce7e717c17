"""`stt finetune`: adapt a trained model to new data, then compare it with where it started.

Fine-tuning is training (:func:`stt.training.trainer.train`) with a ``finetune`` section in the
config, which the trainer applies with :mod:`stt.training.adapt` (vocabulary and head growth,
frozen layers, original data mixed in). :func:`finetune` wraps the run with greedy evaluations of
the starting and the fine-tuned model and writes ``finetune_report.json`` and ``.md``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from stt.checkpoint import load_checkpoint
from stt.errors import ConfigError
from stt.evaluate import EvalConfig, run_eval
from stt.training import distributed as D
from stt.training.config import FinetuneConfig, TrainConfig
from stt.training.trainer import train
from stt.transcribe import default_model_path

# ---------------------------------------------------------------------------------------------
# The job: evaluate, fine-tune, evaluate again, report
# ---------------------------------------------------------------------------------------------


def resolve_init_from(spec: str | None) -> str:
    """``default`` -> the shipped model's path; a missing value is an error."""
    if not spec:
        raise ConfigError("fine-tuning needs a starting checkpoint: init_from=PATH (or default)")
    if spec == "default":
        path = default_model_path()
        if not path.is_file():
            raise ConfigError(f"{path}: no default model; give init_from=CHECKPOINT")
        return str(path)
    return spec


def evaluate_groups(
    checkpoint: str, groups: dict[str, list[str]], out_dir: Path, cfg: TrainConfig
) -> dict[str, dict[str, float]]:
    """Greedy WER/CER of ``checkpoint`` on each group of manifests (``{}`` for an empty one)."""
    device = cfg.trainer.device if cfg.trainer.device in ("auto", "cpu") else "auto"
    results: dict[str, dict[str, float]] = {}
    for group, manifests in groups.items():
        if not manifests:
            continue
        report = run_eval(
            EvalConfig(
                checkpoint=checkpoint,
                manifests=list(manifests),
                out_dir=str(out_dir / group),
                decoders=["greedy"],
                device=device,
                progress=cfg.trainer.progress,
            )
        )
        overall = report["decoders"]["greedy"]["overall"]
        results[group] = {"wer": float(overall["wer"]), "cer": float(overall["cer"])}
    return results


def finetune(cfg: TrainConfig) -> dict:
    """Fine-tune ``cfg.init_from`` on ``cfg.data.train``; returns the before/after report.

    Writes the usual training outputs to ``cfg.run_dir`` plus ``eval_before/``, ``eval_after/``
    and ``finetune_report.json`` / ``.md`` (under DDP, rank 0 evaluates and reports).
    """
    cfg = replace(
        cfg,
        finetune=cfg.finetune if cfg.finetune is not None else FinetuneConfig(),
        init_from=resolve_init_from(cfg.init_from),
    )
    ft = cfg.finetune
    run_dir = Path(cfg.run_dir)
    groups = {"new": list(ft.eval_new), "original": list(ft.eval_original)}
    is_main = D.dist_info().is_main

    before = evaluate_groups(cfg.init_from, groups, run_dir / "eval_before", cfg) if is_main else {}
    result = train(cfg)
    if not is_main:
        return {}
    best = run_dir / "best.pt"
    checkpoint = best if best.is_file() else run_dir / "last.pt"
    after = evaluate_groups(str(checkpoint), groups, run_dir / "eval_after", cfg)

    start_vocab = load_checkpoint(cfg.init_from)["vocab"]["tokens"]
    end_vocab = load_checkpoint(checkpoint)["vocab"]["tokens"]
    report = {
        "init_from": cfg.init_from,
        "checkpoint": str(checkpoint),
        "added_chars": end_vocab[len(start_vocab) :],
        "frozen": {
            "input_proj": ft.freeze_input_proj,
            "blocks": ft.freeze_blocks,
            "norm_stats": ft.freeze_norm_stats,
        },
        "train": {
            "manifests": list(cfg.data.train),
            "mix_manifests": list(ft.mix_manifests),
            "mix_ratio": ft.mix_ratio,
            "stop_reason": result.stop_reason,
            "epoch": result.epoch,
            "step": result.step,
            "wall_minutes": result.wall_minutes,
        },
        "eval_sets": groups,
        "before": before,
        "after": after,
    }
    (run_dir / "finetune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "finetune_report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    """The before/after table of a fine-tuning report."""
    lines = [
        "# Fine-tuning report",
        "",
        f"- start: `{report['init_from']}`",
        f"- fine-tuned: `{report['checkpoint']}` ({report['train']['stop_reason']}, "
        f"step {report['train']['step']})",
        f"- characters added: {' '.join(report['added_chars']) or 'none'}",
        "",
        "| test sets | WER before | WER after | CER before | CER after |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, manifests in report["eval_sets"].items():
        if group not in report["after"]:
            continue
        b, a = report["before"].get(group, {}), report["after"][group]
        pct = lambda f, k: f"{100 * f[k]:.2f}%" if k in f else "-"  # noqa: E731
        lines.append(
            f"| {group} ({', '.join(manifests)}) | {pct(b, 'wer')} | {pct(a, 'wer')} | "
            f"{pct(b, 'cer')} | {pct(a, 'cer')} |"
        )
    return "\n".join(lines) + "\n"
