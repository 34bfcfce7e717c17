"""`stt finetune`: adapt a trained model to new data, then compare it with where it started.

Fine-tuning is training (:func:`stt.training.trainer.train`) with a ``finetune`` section in the
config, which the trainer applies with :mod:`stt.training.adapt` (vocabulary and head growth,
frozen layers, original data mixed in). :func:`finetune` wraps the run with greedy evaluations of
the starting and the fine-tuned model and writes ``finetune_report.json`` and ``.md``, where the
WER change on each evaluation group comes with a paired-bootstrap 95% interval.

Without ``data.dev``, a speaker-disjoint dev set is held out of ``data.train`` (once per run
folder, in ``run_dir/auto_split/``): it drives the plateau stop and, unless ``finetune.eval_new``
is given, is the "new" evaluation set.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

from stt.atomic import atomic_path
from stt.checkpoint import load_checkpoint
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.data.split import split_by_speaker, split_by_utterance
from stt.errors import ConfigError
from stt.evaluate import EvalConfig, run_eval
from stt.metrics import paired_bootstrap_change
from stt.text import Vocabulary
from stt.training import distributed as D
from stt.training.adapt import new_characters
from stt.training.config import FinetuneConfig, TrainConfig
from stt.training.trainer import train, writing
from stt.transcribe import default_model_path

log = logging.getLogger("stt.finetune")

AUTO_SPLIT_DIR = "auto_split"  # under run_dir: train.jsonl, dev.jsonl, split.json
# Fewer utterances than this (and fewer than two speakers) leave nothing to hold out: one or
# two dev utterances would make the plateau stop and the before/after comparison a coin toss.
MIN_UTTERANCES_TO_SPLIT = 10
# A speaker split that would hold out more than this share of the audio (a few speakers of
# very unequal size) leaves too little to train on: a random share of utterances is drawn.
MAX_SPEAKER_SPLIT_SHARE = 0.5

# ---------------------------------------------------------------------------------------------
# Without data.dev: a dev set held out of data.train
# ---------------------------------------------------------------------------------------------


def draw_dev_split(
    utterances: list[Utterance], dev_fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance], str]:
    """Hold out about ``dev_fraction`` of the audio; returns train, dev and why utterances, not
    speakers, were drawn ("" for a speaker split).

    Whole speakers (``split_by_speaker``) when every utterance has a ``speaker`` and there are
    two or more, so the dev figures are those of voices the model never trained on; otherwise
    (or when whole speakers would take more than half the audio) a random ``dev_fraction`` of
    the utterances, whose speakers are also heard in training. Too little data is a
    ``ConfigError`` asking for data.dev."""
    speakers = {u.speaker for u in utterances}
    known = len(speakers - {None})
    how = "no speaker ids" if None in speakers else "one speaker"
    if None not in speakers and known >= 2:
        train, dev = split_by_speaker(utterances, dev_fraction, seed)
        share = _seconds(dev) / max(_seconds(utterances), 1e-9)
        if share <= MAX_SPEAKER_SPLIT_SHARE or len(utterances) < MIN_UTTERANCES_TO_SPLIT:
            return train, dev, ""
        how = f"whole speakers would hold out {100 * share:.0f}% of the audio"
    if len(utterances) < MIN_UTTERANCES_TO_SPLIT:
        raise ConfigError(
            f"data.train is too small to hold out a dev set of its own ({len(utterances)} "
            f"utterance(s), {known} speaker(s)): give data.dev=[DEV.jsonl]"
        )
    train, dev = split_by_utterance(utterances, dev_fraction, seed)
    return train, dev, how


def hold_out_dev(cfg: TrainConfig, as_eval_new: bool) -> dict:
    """Hold a dev set out of ``cfg.data.train`` into ``run_dir/auto_split/`` and return its
    record (``split.json``); a rerun in the same run folder reuses it, never redraws it.

    The two manifests are written first and ``split.json`` last (all atomically), so a killed
    run leaves either a whole split or none. One INFO line says what was held out."""
    out = Path(cfg.run_dir) / AUTO_SPLIT_DIR
    record_path = out / "split.json"
    sources = [str(Path(p).resolve()) for p in cfg.data.train]
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("sources") != sources:
            drawn_from = ", ".join(record.get("sources", []))
            raise ConfigError(
                f"{out}: the dev split there was held out of {drawn_from}, not this data.train; "
                "use another run_dir, or give data.dev"
            )
        for side in ("train", "dev"):
            if not (out / f"{side}.jsonl").is_file():
                raise ConfigError(
                    f"{out / f'{side}.jsonl'}: missing from the held-out dev split; "
                    f"delete {out} to draw a new one, or give data.dev"
                )
        log.info(describe_split(record, as_eval_new, reused=True))
        return record
    if not cfg.data.train:
        raise ConfigError("no training data: set data.train=[path/to/train.jsonl,...]")
    fraction = (cfg.finetune or FinetuneConfig()).dev_fraction
    utterances = [u for path in cfg.data.train for u in read_manifest(path)]
    train_utts, dev_utts, why = draw_dev_split(utterances, fraction, cfg.trainer.seed)
    with writing(out):
        dev_path = write_manifest(out / "dev.jsonl", dev_utts)
        train_path = write_manifest(out / "train.jsonl", train_utts)
        record = {
            "sources": sources,
            "seed": cfg.trainer.seed,
            "dev_fraction": fraction,
            "by": "utterance" if why else "speaker",
            "why": why,  # utterances, not speakers: no speaker ids, one speaker, ...
            "train": _side(train_path, train_utts),
            "dev": _side(dev_path, dev_utts),
            "dev_speakers": sorted({u.speaker for u in dev_utts} - {None}),
        }
        with atomic_path(record_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
    log.info(describe_split(record, as_eval_new, reused=False))
    return record


def describe_split(record: dict, as_eval_new: bool, reused: bool) -> str:
    """The one log line: what was held out, from what, and where the manifests are."""
    train, dev = record["train"], record["dev"]
    share = dev["minutes"] / max(train["minutes"] + dev["minutes"], 1e-9)
    if record["by"] == "speaker":
        what = (
            f"{dev['speakers']} of {dev['speakers'] + train['speakers']} speakers "
            f"({_count(dev['utterances'], 'utterance')}, {dev['minutes']:.1f} min, "
            f"{100 * share:.0f}% of the audio)"
        )
    else:
        what = (
            f"{_count(dev['utterances'], 'random utterance')} of "
            f"{dev['utterances'] + train['utterances']} ({dev['minutes']:.1f} min, "
            f"{100 * share:.0f}% of the audio; {record['why']}, so their speakers are heard in "
            "training too)"
        )
    role = "the dev set and the new evaluation set" if as_eval_new else "the dev set"
    verb = "reusing the split held out earlier:" if reused else "held out"
    return (
        f"no data.dev: {verb} {what} of data.train as {role}: {dev['manifest']}; training on "
        f"the other {_count(train['utterances'], 'utterance')}: {train['manifest']}"
    )


def train_on_split(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` training on ``run_dir/auto_split/train.jsonl`` with its dev set beside it.

    Every DDP rank calls this (rank 0 wrote the split before any rank reads it: the trainer's
    first barrier). The vocabulary still grows by every new character of the whole of
    data.train, held-out part included, so that it does not depend on the draw."""
    assert cfg.finetune is not None
    out = Path(cfg.run_dir) / AUTO_SPLIT_DIR
    weights = list(cfg.data.train_weights)
    if len(set(weights)) > 1:
        raise ConfigError(
            "data.train_weights needs data.dev: the held-out dev split pools data.train"
        )
    ft = cfg.finetune
    if ft.add_new_chars:
        base_vocab = Vocabulary.from_dict(load_checkpoint(cfg.init_from)["vocab"])
        ft = replace(ft, extra_chars="".join(new_characters(base_vocab, ft, list(cfg.data.train))))
    data = replace(
        cfg.data,
        train=[str(out / "train.jsonl")],
        train_weights=weights[:1],
        dev=[str(out / "dev.jsonl")],
    )
    return replace(cfg, data=data, finetune=ft)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _seconds(utterances: list[Utterance]) -> float:
    return sum(u.duration for u in utterances)


def _side(path: Path, utterances: list[Utterance]) -> dict:
    return {
        "manifest": str(path),
        "utterances": len(utterances),
        "speakers": len({u.speaker for u in utterances} - {None}),
        "minutes": _seconds(utterances) / 60,
    }


# ---------------------------------------------------------------------------------------------
# The WER change, with a paired bootstrap interval
# ---------------------------------------------------------------------------------------------


def utterance_counts(eval_dir: Path, decoder: str = "greedy") -> dict[tuple, tuple[int, int]]:
    """``(word errors, reference words)`` per utterance of an evaluation's ``utterances.jsonl``,
    keyed by (set, audio file, occurrence) so two evaluations of one set line up."""
    counts: dict[tuple, tuple[int, int]] = {}
    seen: Counter = Counter()
    with (eval_dir / "utterances.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["decoder"] != decoder:
                continue
            key = (row["set"], row["audio_filepath"])
            seen[key] += 1
            counts[(*key, seen[key])] = (int(row["word_errors"]), int(row["words"]))
    return counts


def speaker_ids(manifests: list[str]) -> list[str | None]:
    """The ``speaker`` of every utterance of ``manifests`` (None where it has none)."""
    return [u.speaker for path in manifests for u in read_manifest(path)]


def wer_change(
    before_dir: Path, after_dir: Path, manifests: list[str], trained_on: list[str], held_out: bool
) -> dict | None:
    """The greedy WER before and after on one evaluation group, the change (absolute, in WER
    units, and relative), its paired-bootstrap 95% interval, whether that excludes 0, and who
    spoke: ``speakers`` and how many of them are ``unseen`` in ``trained_on`` (None if the
    manifests lack speaker ids). None when the two evaluations share no utterance."""
    before, after = utterance_counts(before_dir), utterance_counts(after_dir)
    keys = [k for k in before if k in after]
    if not keys:
        return None
    e0, e1 = [before[k][0] for k in keys], [after[k][0] for k in keys]
    words = [before[k][1] for k in keys]
    total = max(sum(words), 1)
    wer_before, wer_after = sum(e0) / total, sum(e1) / total
    absolute = wer_after - wer_before
    low, high = paired_bootstrap_change(e0, e1, words)
    significant = high < 0 or low > 0
    ids = speaker_ids(manifests)
    speakers = None if None in ids else set(ids)
    heard = set(speaker_ids(trained_on)) if speakers else set()
    return {
        "before": wer_before,
        "after": wer_after,
        "absolute": absolute,
        "relative": absolute / wer_before if wer_before > 0 else None,
        "ci95": [low, high],
        "significant": significant,
        "verdict": ("better" if absolute < 0 else "worse") if significant else "within noise",
        "utterances": len(keys),
        "speakers": len(speakers) if speakers is not None else None,
        "unseen_speakers": len(speakers - heard) if speakers is not None else None,
        "held_out": held_out,
    }


def change_sentence(change: dict) -> str:
    """``WER fell from 40.1% to 31.0% on 23 held-out utterances of 2 unseen speakers (95% CI
    of the change: -14.2 to -4.0 points).``"""
    b, a = 100 * change["before"], 100 * change["after"]
    if round(a, 1) == round(b, 1):
        head = f"WER stayed at {b:.1f}%"
    else:
        head = f"WER {'fell' if a < b else 'rose'} from {b:.1f}% to {a:.1f}%"
    n = change["utterances"]
    what = f"{n} {'held-out ' if change['held_out'] else ''}utterance{'s' * (n != 1)}"
    speakers, unseen = change["speakers"], change["unseen_speakers"]
    if speakers:
        plural = "s" * (speakers != 1)
        if unseen == speakers:
            what += f" of {speakers} unseen speaker{plural}"
        else:
            what += f" of {speakers} speaker{plural} ({speakers - unseen} heard in training)"
    low, high = change["ci95"]
    ci = f"95% CI of the change: {100 * low:+.1f} to {100 * high:+.1f} points"
    if not change["significant"]:
        ci += "; it holds 0, so the change is within noise"
    return f"{head} on {what} ({ci})."


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
    and ``finetune_report.json`` / ``.md`` (under DDP, rank 0 evaluates and reports). Without
    ``cfg.data.dev``, ``run_dir/auto_split/`` holds the dev set drawn from data.train (see
    :func:`hold_out_dev`), which is also the "new" group when ``finetune.eval_new`` is empty.
    """
    cfg = replace(
        cfg,
        finetune=cfg.finetune if cfg.finetune is not None else FinetuneConfig(),
        init_from=resolve_init_from(cfg.init_from),
    )
    run_dir = Path(cfg.run_dir)
    is_main = D.dist_info().is_main
    sources = list(cfg.data.train)
    split = None
    if not cfg.data.dev:
        on_split = train_on_split(cfg)  # first: its refusals come before anything is written
        if is_main:  # before any rank trains: the others read the split after the first barrier
            split = hold_out_dev(cfg, as_eval_new=not cfg.finetune.eval_new)
        cfg = on_split
    ft = cfg.finetune
    held_out_new = split is not None and not ft.eval_new
    groups = {
        "new": list(ft.eval_new) or (list(cfg.data.dev) if held_out_new else []),
        "original": list(ft.eval_original),
    }

    before = evaluate_groups(cfg.init_from, groups, run_dir / "eval_before", cfg) if is_main else {}
    result = train(cfg)
    if not is_main:
        return {}
    best = run_dir / "best.pt"
    checkpoint = best if best.is_file() else run_dir / "last.pt"
    after = evaluate_groups(str(checkpoint), groups, run_dir / "eval_after", cfg)
    changes = wer_changes(cfg, groups, set(before) & set(after), held_out_new)
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
            "only_norms": ft.only_norms,
        },
        "train": {
            "manifests": sources,
            "trained_on": list(cfg.data.train),
            "mix_manifests": list(ft.mix_manifests),
            "mix_ratio": ft.mix_ratio,
            "stop_reason": result.stop_reason,
            "epoch": result.epoch,
            "step": result.step,
            "wall_minutes": result.wall_minutes,
        },
        "dev": {"manifests": list(cfg.data.dev), "held_out": split},
        "eval_sets": groups,
        "before": before,
        "after": after,
        "wer_change": changes,
    }
    with writing(run_dir / "finetune_report.json"):
        with atomic_path(run_dir / "finetune_report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        with atomic_path(run_dir / "finetune_report.md") as tmp:
            tmp.write_text(report_markdown(report))
    return report


def wer_changes(
    cfg: TrainConfig, groups: dict[str, list[str]], evaluated: set[str], held_out_new: bool
) -> dict[str, dict]:
    """:func:`wer_change` of every group evaluated before and after fine-tuning."""
    run_dir = Path(cfg.run_dir)
    trained_on = list(cfg.data.train) + list(cfg.finetune.mix_manifests)
    changes = {}
    for group in sorted(evaluated, key=list(groups).index):
        change = wer_change(
            run_dir / "eval_before" / group,
            run_dir / "eval_after" / group,
            groups[group],
            trained_on,
            held_out=held_out_new and group == "new",
        )
        if change is not None:
            changes[group] = change
    return changes


def report_markdown(report: dict) -> str:
    """The before/after table of a fine-tuning report, and a sentence per group on the change."""
    lines = [
        "# Fine-tuning report",
        "",
        f"- start: `{report['init_from']}`",
        f"- fine-tuned: `{report['checkpoint']}` ({report['train']['stop_reason']}, "
        f"step {report['train']['step']})",
        f"- characters added: {' '.join(report['added_chars']) or 'none'}",
    ]
    split = report.get("dev", {}).get("held_out")
    if split:
        dev = split["dev"]
        who = (
            f"{dev['speakers']} whole speaker{'s' * (dev['speakers'] != 1)}"
            if split["by"] == "speaker"
            else "random utterances, speakers also heard in training"
        )
        lines.append(
            f"- dev set: held out of data.train ({who}; {dev['utterances']} utterances, "
            f"{dev['minutes']:.1f} min): `{dev['manifest']}`"
        )
    lines += [
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
    changes = report.get("wer_change", {})
    if changes:
        lines.append("")
        lines += [f"- {group}: {change_sentence(change)}" for group, change in changes.items()]
        if split and "new" in changes and changes["new"]["held_out"]:
            lines += [
                "",
                "The held-out set also picked the best checkpoint, so its after figure is a "
                "little optimistic; `finetune.eval_new` gives an untouched test set.",
            ]
    return "\n".join(lines) + "\n"
