"""Evaluation reports: ``report.json``, ``report.md``, ``utterances.jsonl`` and PNG plots."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from stt.metrics import ErrorCounts, bootstrap_rate_interval, word_confusions

log = logging.getLogger(__name__)

LENGTH_BINS = [(0, 2), (2, 4), (4, 8), (8, 15), (15, float("inf"))]


def figures(counts: ErrorCounts, audio_seconds: float, compute_seconds: float, n: int) -> dict:
    return {
        "wer": counts.wer,
        "cer": counts.cer,
        "ser": counts.ser,
        "substitutions": counts.substitutions,
        "deletions": counts.deletions,
        "insertions": counts.insertions,
        "words": counts.words,
        "utterances": n,
        "hours": audio_seconds / 3600,
        "rtfx": audio_seconds / max(compute_seconds, 1e-9),
    }


def by_length(rows: list[dict]) -> list[dict]:
    """WER per utterance-duration bin (word errors over reference words in the bin)."""
    out = []
    for lo, hi in LENGTH_BINS:
        in_bin = [r for r in rows if lo <= r["duration"] < hi]
        if in_bin:
            words = sum(r["words"] for r in in_bin)
            errors = sum(r["word_errors"] for r in in_bin)
            label = f"{lo:g}-{hi:g} s" if hi != float("inf") else f">{lo:g} s"
            out.append({"bin": label, "utterances": len(in_bin), "wer": errors / max(words, 1)})
    return out


def write_reports(out_dir: Path, cfg, model, sets, scores) -> dict:
    """Write every report file; returns the ``report.json`` content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "checkpoint": str(cfg.checkpoint),
        "model": model.describe(),
        "decoders": {},
        "sets": {
            s.name: {
                "manifest": s.path,
                "utterances": len(s.utterances),
                "hours": s.seconds / 3600,
                "bad_manifest_lines": len(s.bad_lines),
                "unreadable_audio": len(s.bad_audio),
                # references with characters the model cannot emit: certain errors
                "unscorable_utterances": s.unscorable_utterances,
                "unscorable_chars": dict(s.unscorable_chars.most_common()),
            }
            for s in sets
        },
    }
    for label, per_set in scores.items():
        total = ErrorCounts()
        audio = compute = 0.0
        entry: dict = {"sets": {}}
        for name, score in per_set.items():
            entry["sets"][name] = figures(
                score.counts, score.audio_seconds, score.compute_seconds, len(score.utterances)
            )
            entry["sets"][name]["by_length"] = by_length(score.utterances)
            entry["sets"][name]["wer_95ci"] = bootstrap_rate_interval(
                [r["word_errors"] for r in score.utterances], [r["words"] for r in score.utterances]
            )
            total = total + score.counts
            audio += score.audio_seconds
            compute += score.compute_seconds
        n = sum(len(s.utterances) for s in per_set.values())
        entry["overall"] = figures(total, audio, compute, n)
        pairs = [(r["reference"], r["hypothesis"]) for s in per_set.values() for r in s.utterances]
        entry["confusions"] = word_confusions(pairs)
        report["decoders"][label] = entry
    decoder_settings = {k: v for k, v in asdict(cfg.decoder).items()}
    report["decoder_settings"] = decoder_settings

    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    with (out_dir / "utterances.jsonl").open("w", encoding="utf-8") as handle:
        for label, per_set in scores.items():
            for name, score in per_set.items():
                for row in score.utterances:
                    handle.write(json.dumps({"decoder": label, "set": name, **row}) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    plot_wer_per_set(report, out_dir / "wer_per_set.png")
    plot_wer_by_length(report, out_dir / "wer_by_length.png")
    return report


def markdown(report: dict) -> str:
    lines = [
        "# Evaluation report",
        "",
        f"Checkpoint: `{report['checkpoint']}`  ",
        f"Model: {report['model']}",
        "",
    ]
    labels = list(report["decoders"])
    if len(labels) > 1:
        lines += ["## Side by side (WER / CER %)", ""]
        lines.append("| set | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for name in [*report["sets"], "overall"]:
            cells = []
            for label in labels:
                d = report["decoders"][label]
                f = d["overall"] if name == "overall" else d["sets"][name]
                cells.append(f"{100 * f['wer']:.2f} / {100 * f['cer']:.2f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    for label in labels:
        d = report["decoders"][label]
        lines += [
            f"## {label}",
            "",
            "| set | WER % | WER 95% CI | CER % | SER % | S | D | I | utterances | hours | RTFx |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, f in [*d["sets"].items(), ("**overall**", d["overall"])]:
            ci = f.get("wer_95ci")
            ci_text = f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}" if ci else "-"
            lines.append(
                f"| {name} | {100 * f['wer']:.2f} | {ci_text} | {100 * f['cer']:.2f} "
                f"| {100 * f['ser']:.1f} "
                f"| {f['substitutions']} | {f['deletions']} | {f['insertions']} "
                f"| {f['utterances']} | {f['hours']:.3f} | {f['rtfx']:.0f} |"
            )
        lines += ["", "Most frequent word errors:", ""]
        for c in d["confusions"][:10]:
            ref, hyp = c["reference"] or "(insertion)", c["hypothesis"] or "(deletion)"
            lines.append(f"- `{ref}` -> `{hyp}`: {c['count']}")
        lines.append("")
    problems = {
        n: s for n, s in report["sets"].items() if s["bad_manifest_lines"] or s["unreadable_audio"]
    }
    if problems:
        lines += ["## Skipped input", ""]
        for name, s in problems.items():
            lines.append(
                f"- {name}: {s['bad_manifest_lines']} malformed manifest line(s), "
                f"{s['unreadable_audio']} unreadable audio file(s) (see the log)"
            )
        lines.append("")
    unscorable = {n: s for n, s in report["sets"].items() if s.get("unscorable_utterances")}
    if unscorable:
        lines += ["## References the model cannot match", ""]
        for name, s in unscorable.items():
            chars = " ".join(f"{c!r}x{n}" for c, n in s["unscorable_chars"].items())
            lines.append(
                f"- {name}: {s['unscorable_utterances']} reference(s) hold characters outside "
                f"the model's vocabulary, each a certain error: {chars}"
            )
        lines.append("")
    lines += [
        "Per-utterance results (reference, hypothesis, aligned diff): `utterances.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots")
        return None
    return plt


def plot_wer_per_set(report: dict, path: Path) -> None:
    plt = _pyplot()
    if plt is None:
        return
    names = list(report["sets"])
    labels = list(report["decoders"])
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 4))
    for k, label in enumerate(labels):
        values = [100 * report["decoders"][label]["sets"][n]["wer"] for n in names]
        xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set(ylabel="WER %", title="WER per test set")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_wer_by_length(report: dict, path: Path) -> None:
    plt = _pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, d in report["decoders"].items():
        for name, f in d["sets"].items():
            bins = f["by_length"]
            ax.plot([b["bin"] for b in bins], [100 * b["wer"] for b in bins], marker="o",
                    label=f"{name} ({label})")  # fmt: skip
    ax.set(xlabel="utterance duration", ylabel="WER %", title="WER by utterance length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
