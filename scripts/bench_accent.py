#!/usr/bin/env python
"""Accent adaptation (issue 6): fine-tune a model that never heard Scottish English on <= 10
minutes of it, on this CPU, and compare WER before/after on unseen Scottish voices and on the
original dev sets.

The recipe, under a work folder WORK (default ``data_cache``):

1. ``WORK/accent/base_train.jsonl`` and ``orig_dev.jsonl``: ``WORK/synth/{train,dev}.jsonl``
   without the accent, in order, audio paths rewritten for the new folder (made if missing,
   checked if present). The corpus itself comes from ``scripts/train_reference_run.sh``'s first
   steps, run here if missing.
2. The base model ``WORK/runs/accent-base/best.pt`` (``--base`` for another checkpoint), trained
   by :data:`base_train_command` if missing: about an hour or more on a 2-core CPU.
3. ``WORK/accent/scottish``: ``stt synth`` of that accent alone. Its train split (seen voices)
   gives the adapt set, ``WORK/accent/adapt.jsonl`` (its first utterances, up to 10 minutes);
   its dev split picks the best epoch; its test split (other voices, other sentences) measures.
4. ``stt finetune`` from the base on the adapt set, timed.
5. Greedy and beam+LM (the shipped 3-gram) WER/CER of the base and the fine-tuned model on the
   accent test and on each original dev set.
6. ``bench/results/accent.json`` and ``accent.png``.

    .venv/bin/python scripts/bench_accent.py [--work data_cache] [--base CKPT] [--base-note TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import RESULTS_DIR, write_results  # noqa: E402

from stt.data.manifest import Utterance, read_manifest, write_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACCENT = "scottish"
SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared" / "data"))

# Issue 6's targets.
TARGET_ACCENT_REDUCTION = 0.50  # relative WER reduction on the new accent, at least
TARGET_ORIGINAL_LOSS = 0.10  # relative WER increase on the original dev sets, at most
TARGET_FINETUNE_MINUTES = 10.0  # fine-tuning wall time on this CPU, at most

# The fine-tuning settings the benchmark uses: `stt finetune`'s defaults (conf/finetune.yaml),
# with patience 4. Chosen on a throwaway base (model=small, 45 min of CPU training on the recipe's
# data) by the Scottish dev loss, among the settings whose WER on every original dev set rose by
# at most 10%; SETTINGS_CHOICE, which goes into the JSON, lists what was tried.
FINETUNE_DEFAULTS = {
    "lr": 5e-4,
    "freeze_blocks": 0,  # the front end stays frozen (stt finetune's default)
    "mix_ratio": 0.3,
    "patience": 4,  # evaluations (epochs) without a better Scottish dev loss
    "max_minutes": 9.0,
    # One thread: on this 2-core machine, shared with other jobs, two OpenMP threads ran a
    # training step 10-25x slower than one (each waits for the other to be scheduled); on an
    # idle machine two would be at most twice as fast.
    "threads": 1,
}
# What was tried: (lr, mix_ratio, best Scottish dev loss, greedy WER change on the pooled
# original dev sets, on the worst of them: AN4 dev every time).
SETTINGS_TRIED = (
    (1e-3, 1.0, 1.2223, 0.032, 0.157),
    (5e-4, 0.3, 1.2205, 0.016, 0.074),
    (2e-3, 1.0, 1.2065, 0.069, 0.441),
    (5e-4, 1.0, 1.2161, 0.024, 0.123),
    (1e-3, 0.3, 1.1992, 0.028, 0.245),
)
SETTINGS_CHOICE = {
    "base": "throwaway dev base (model=small, 45 min on this CPU, the recipe's data)",
    "rule": "lowest best Scottish dev loss among settings whose greedy WER on every original dev "
    "set rose by at most 10% (the target); the accent test split was not used to choose",
    "note": "the dev losses differ little (1.20-1.22, one seed each); the original dev sets "
    "decided, AN4 (real speech) being the one that suffers",
    "common": "freeze_blocks=0 (front end frozen), patience 4, warm-up 50 steps, 1 thread",
    "tried": [
        {
            "lr": lr,
            "mix_ratio": mix,
            "accent_dev_loss": loss,
            "original_pooled_wer_change": pooled,
            "an4_dev_wer_change": worst,
        }
        for lr, mix, loss, pooled, worst in SETTINGS_TRIED
    ],
}


class BenchError(Exception):
    """A problem the user can fix (missing data, a mismatching manifest); one line on exit."""


# ---------------------------------------------------------------------------------------------
# Pure helpers (tests/test_bench_accent.py)
# ---------------------------------------------------------------------------------------------


def without_accent(src: Path, dst: Path, accent: str) -> list[str]:
    """The lines of manifest ``src`` whose ``accent`` is not ``accent``, in order, as they must
    read in manifest ``dst``: a relative audio path is rewritten relative to ``dst``'s folder
    (absolute ones are kept); every other key is kept as it was."""
    src, dst = Path(src), Path(dst)
    lines = []
    for line in src.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("accent") == accent:
            continue
        audio = record["audio_filepath"]
        if not os.path.isabs(audio):
            full = os.path.abspath(src.parent / audio)
            record["audio_filepath"] = Path(os.path.relpath(full, dst.parent.absolute())).as_posix()
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return lines


def ensure_without_accent(src: Path, dst: Path, accent: str) -> str:
    """Write ``dst`` (see :func:`without_accent`) if missing, else check it holds exactly those
    lines. Returns ``"created"`` or ``"verified"``."""
    lines = "".join(without_accent(src, dst, accent))
    if Path(dst).is_file():
        if Path(dst).read_text(encoding="utf-8") != lines:
            raise BenchError(
                f"{dst} differs from {src} without accent {accent!r}: delete it to remake it "
                "(and retrain the base model on it)"
            )
        return "verified"
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(dst).with_name(f".{Path(dst).name}.partial")
    tmp.write_text(lines, encoding="utf-8")
    tmp.replace(dst)
    return "created"


def first_minutes(utterances: list[Utterance], minutes: float) -> list[Utterance]:
    """The longest prefix of ``utterances`` whose audio adds up to at most ``minutes``."""
    kept, total = [], 0.0
    for utt in utterances:
        if total + utt.duration > minutes * 60:
            break
        kept.append(utt)
        total += utt.duration
    return kept


def speakers(utterances: list[Utterance]) -> list[str]:
    """The sorted voices of ``utterances`` (their ``speaker`` key, which every one must have)."""
    missing = [str(u.audio_filepath) for u in utterances if u.speaker is None]
    if missing:
        raise BenchError(f"{len(missing)} utterance(s) without a speaker, e.g. {missing[0]}")
    return sorted({u.speaker for u in utterances})


def check_disjoint_voices(adapt: list[Utterance], test: list[Utterance]) -> dict[str, list[str]]:
    """The voices of the adapt and test sets; an error if any voice is in both."""
    seen, unseen = speakers(adapt), speakers(test)
    shared = sorted(set(seen) & set(unseen))
    if shared:
        raise BenchError(f"adapt and test sets share voices: {', '.join(shared)}")
    return {"adapt": seen, "test": unseen}


def relative_change(before: float, after: float) -> float | None:
    """``(after - before) / before``; None when ``before`` is 0."""
    return (after - before) / before if before else None


# ---------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------


def stt_command(line: str) -> list[str]:
    """An ``stt`` command line (shell quoting) as its argument list, without the ``stt``."""
    return shlex.split(line)


def shown(args: list[str]) -> str:
    return "stt " + shlex.join(args)


def run(args: list[str], threads: int | None = None) -> None:
    """Run ``stt ARGS`` with this interpreter, from the repository root (with ``threads``
    OpenMP threads, if given)."""
    print("+", shown(args), flush=True)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    subprocess.run([sys.executable, "-m", "stt", *args], check=True, cwd=ROOT, env=env)


def corpus_commands(work: Path) -> list[list[str]]:
    """The corpus steps of ``scripts/train_reference_run.sh``."""
    w, shared = shlex.quote(str(work)), shlex.quote(str(SHARED))
    return [
        stt_command(f"synth {w}/synth --hours 2.8 --seed 1 --no-progress"),
        stt_command(
            f"data split {shared}/an4_train/manifest.jsonl {w}/an4 --dev-fraction 0.1 "
            "--speaker-pattern '^([^_]+)_'"
        ),
        stt_command(
            f"data split {shared}/fsdd_train/manifest.jsonl {w}/fsdd --dev-fraction 0.15 "
            r"--speaker-pattern '^\d+_([a-z]+)_'"
        ),
    ]


def base_train_command(work: Path) -> list[str]:
    """The fixed recipe of the base model (the lead trains it on a GPU with exactly this)."""
    w = shlex.quote(str(work))
    return stt_command(
        f"train model=medium "
        f"data.train=[{w}/accent/base_train.jsonl,{w}/an4/train.jsonl,{w}/fsdd/train.jsonl] "
        f"data.train_weights=[1,2,1] "
        f"data.dev=[{w}/accent/orig_dev.jsonl,{w}/an4/dev.jsonl,{w}/fsdd/dev.jsonl] "
        f"run_dir={w}/runs/accent-base trainer.patience=3 trainer.min_delta=0.01 optim.lr=3e-3"
    )


def accent_synth_command(work: Path) -> list[str]:
    w = shlex.quote(str(work))
    return stt_command(
        f"synth {w}/accent/{ACCENT} --hours 0.5 --seed 1 --no-progress accents=[{ACCENT}]"
    )


def ensure_corpus(work: Path) -> None:
    needed = [work / f"{c}/{s}.jsonl" for c in ("synth", "an4", "fsdd") for s in ("train", "dev")]
    if all(p.is_file() for p in needed):
        return
    if not (SHARED / "an4_train").is_dir():
        raise BenchError(f"{SHARED}/an4_train missing: set SHARED to the real recordings' folder")
    print("corpus missing: making it as scripts/train_reference_run.sh does (synth: ~30 min)")
    for command in corpus_commands(work):
        run(command)


def ensure_base(work: Path, base: Path | None) -> Path:
    if base is not None:
        if not base.is_file():
            raise BenchError(f"{base}: no such checkpoint")
        return base
    path = work / "runs" / "accent-base" / "best.pt"
    if not path.is_file():
        print(
            f"{path} missing: training the base model now. This takes about an hour or more on "
            "a 2-core CPU (minutes on a GPU); rerunning continues an interrupted run.",
            flush=True,
        )
        run(base_train_command(work))
    return path


def ensure_accent_corpus(work: Path) -> Path:
    folder = work / "accent" / ACCENT
    if not all((folder / f"{s}.jsonl").is_file() for s in ("train", "dev", "test")):
        run(accent_synth_command(work))
    return folder


def accent_sets(accent_dir: Path, adapt_path: Path, adapt_minutes: float):
    """The adapt set (written to ``adapt_path`` unless already there), dev and test sets of the
    accent corpus, and their voices, checked: adapt and test share no voice and no sentence."""
    adapt = first_minutes(read_manifest(accent_dir / "train.jsonl"), adapt_minutes)
    if not adapt:
        raise BenchError(f"{accent_dir}/train.jsonl: no utterance fits {adapt_minutes} min")
    if adapt_path.is_file() and read_manifest(adapt_path) == adapt:
        print(f"{adapt_path}: up to date")
    else:
        write_manifest(adapt_path, adapt)
    dev = read_manifest(accent_dir / "dev.jsonl")
    test = read_manifest(accent_dir / "test.jsonl")
    voices = check_disjoint_voices(adapt, test)
    voices["dev"] = speakers(dev)
    shared_sentences = {u.text for u in adapt} & {u.text for u in test}
    if shared_sentences:
        raise BenchError(f"adapt and test sets share {len(shared_sentences)} sentence(s)")
    return adapt, dev, test, voices


def finetune_command(work: Path, base: Path, run_dir: Path, s: dict, extra: list[str]) -> list:
    w = shlex.quote(str(work))
    return [
        *stt_command(
            f"finetune init_from={shlex.quote(str(base))} "
            f"data.train=[{w}/accent/adapt.jsonl] data.dev=[{w}/accent/{ACCENT}/dev.jsonl] "
            f"finetune.eval_new=[{w}/accent/{ACCENT}/test.jsonl] "
            f"finetune.eval_original=[{w}/accent/orig_dev.jsonl,{w}/an4/dev.jsonl,"
            f"{w}/fsdd/dev.jsonl] "
            f"finetune.mix_manifests=[{w}/accent/base_train.jsonl,{w}/an4/train.jsonl,"
            f"{w}/fsdd/train.jsonl] "
            f"finetune.mix_ratio={s['mix_ratio']} finetune.freeze_blocks={s['freeze_blocks']} "
            f"optim.lr={s['lr']} trainer.patience={s['patience']} "
            f"trainer.max_time_minutes={s['max_minutes']} trainer.threads={s['threads']} "
            f"data.num_workers=1 trainer.device=cpu "
            f"trainer.resume=never trainer.progress=false run_dir={shlex.quote(str(run_dir))}"
        ),
        *extra,
    ]


def describe_checkpoint(path: Path) -> dict:
    """What a training checkpoint is: model, how far it was trained, on what, dev results."""
    from stt.checkpoint import load_checkpoint, read_model

    state = load_checkpoint(path)
    config = state.get("config") or {}
    return {
        "model": read_model(path)[0].describe(),
        "epoch": state.get("epoch"),
        "step": state.get("step"),
        "train": config.get("data", {}).get("train"),
        "train_weights": config.get("data", {}).get("train_weights"),
        "dev_results": state.get("dev_results"),
    }


def evaluate(checkpoint: Path, sets: dict[str, Path], out_dir: Path, lm: Path | None) -> dict:
    """Greedy (and beam+LM with the shipped decoder settings) WER/CER per set, plus the
    original dev sets pooled (word- and character-weighted) as ``original``."""
    from stt.decoding import DecoderConfig, load_tuned_decoder
    from stt.evaluate import EvalConfig, run_eval

    decoders = ["greedy"]
    decoder = DecoderConfig(kind="beam")
    if lm is not None:
        decoders.append("beam")
        # The LM's folder may hold tuned settings (the shipped model's do: alpha, beta, width).
        tuned = load_tuned_decoder(lm.parent / "model.pt")
        unigrams = lm.parent / "unigrams.txt"
        decoder = DecoderConfig(
            **{
                **tuned,
                "kind": "beam",
                "lm": str(lm),
                "unigrams": str(unigrams) if unigrams.is_file() else None,
            }
        )
    results: dict[str, dict] = {}
    groups = {"accent": ["accent_test"], "original": [n for n in sets if n != "accent_test"]}
    for group, names in groups.items():
        report = run_eval(
            EvalConfig(
                checkpoint=str(checkpoint),
                manifests=[str(sets[n]) for n in names],
                names=names,
                out_dir=str(out_dir / group),
                decoders=decoders,
                decoder=decoder,
                device="cpu",
                progress=False,
            )
        )
        for label, entry in report["decoders"].items():
            per = results.setdefault(label, {})
            for name, f in entry["sets"].items():
                per[name] = {k: f[k] for k in ("wer", "cer", "words", "utterances")}
            if group == "original":
                per["original"] = {k: entry["overall"][k] for k in ("wer", "cer", "words")}
    return results


def compare(before: dict, after: dict) -> dict:
    """Before/after/relative change of WER and CER, per decoder and set."""
    out: dict = {}
    for label in before:
        out[label] = {}
        for name in before[label]:
            b, a = before[label][name], after[label][name]
            out[label][name] = {
                f"{m}_{when}": round(v[m], 4)
                for m in ("wer", "cer")
                for when, v in (("before", b), ("after", a))
            }
            for m in ("wer", "cer"):
                change = relative_change(b[m], a[m])
                out[label][name][f"{m}_relative_change"] = (
                    None if change is None else round(change, 4)
                )
            out[label][name]["words"] = b["words"]
    return out


def judge(results: dict, finetune_minutes: float) -> dict:
    """Issue 6's targets on greedy WER (beam+LM reported beside it). The original dev sets are
    judged pooled (``met``) and one by one (``met_on_every_set``)."""
    greedy = results["greedy"]
    accent = greedy["accent_test"]["wer_relative_change"]
    original = greedy["original"]["wer_relative_change"]
    per_set = {
        n: greedy[n]["wer_relative_change"] for n in greedy if n not in ("accent_test", "original")
    }
    within = lambda change: change is not None and change <= TARGET_ORIGINAL_LOSS  # noqa: E731
    return {
        "decoder": "greedy",
        "accent_relative_wer_reduction": {
            "target_min": TARGET_ACCENT_REDUCTION,
            "value": None if accent is None else round(-accent, 4),
            "met": accent is not None and -accent >= TARGET_ACCENT_REDUCTION,
        },
        "original_dev_relative_wer_increase": {
            "target_max": TARGET_ORIGINAL_LOSS,
            "value": None if original is None else round(original, 4),
            "met": within(original),
            "per_set": per_set,
            "met_on_every_set": all(within(c) for c in per_set.values()),
        },
        "finetune_wall_minutes": {
            "target_max": TARGET_FINETUNE_MINUTES,
            "value": round(finetune_minutes, 2),
            "met": finetune_minutes <= TARGET_FINETUNE_MINUTES,
        },
    }


def plot(results: dict, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = {
        "accent_test": f"{ACCENT} test\n(unseen voices)",
        "orig_dev": "synth dev\n(no scottish)",
        "an4_dev": "AN4 dev",
        "fsdd_dev": "FSDD dev",
        "original": "original dev\n(pooled)",
    }
    metrics = {"wer": "WER (%)", "cer": "CER (%)"}
    fig, axes = plt.subplots(
        len(metrics), len(results), figsize=(6.5 * len(results), 7.5), squeeze=False, sharey="row"
    )
    for row, (metric, ylabel) in zip(axes, metrics.items(), strict=True):
        for ax, (decoder, per_set) in zip(row, results.items(), strict=True):
            names = [n for n in labels if n in per_set]
            x = np.arange(len(names))
            for offset, when, color in ((-0.2, "before", "#9aa5b1"), (0.2, "after", "#2f6f9f")):
                values = [100 * per_set[n][f"{metric}_{when}"] for n in names]
                bars = ax.bar(x + offset, values, 0.4, label=f"{when} fine-tuning", color=color)
                ax.bar_label(bars, fmt="%.1f", fontsize=7)
            ax.set_xticks(x, [labels[n] for n in names], fontsize=8)
            ax.set_title(f"{ylabel.split()[0]}, {decoder}", fontsize=10)
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, 1.15 * max(ax.get_ylim()[1], 1))
            ax.axvline(0.5, color="#cccccc", lw=0.8)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("data_cache"),
        help="work folder (relative paths: to the repository root, like every path here)",
    )
    parser.add_argument("--base", type=Path, help="starting checkpoint (default: the recipe's)")
    parser.add_argument("--base-note", help="what the base is, for the JSON (e.g. 'throwaway')")
    parser.add_argument(
        "--run-dir", type=Path, help="fine-tuning run (default WORK/runs/accent-ft)"
    )
    parser.add_argument("--adapt-minutes", type=float, default=10.0)
    parser.add_argument("--lr", type=float, default=FINETUNE_DEFAULTS["lr"])
    parser.add_argument("--freeze-blocks", type=int, default=FINETUNE_DEFAULTS["freeze_blocks"])
    parser.add_argument("--mix-ratio", type=float, default=FINETUNE_DEFAULTS["mix_ratio"])
    parser.add_argument("--patience", type=int, default=FINETUNE_DEFAULTS["patience"])
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=FINETUNE_DEFAULTS["max_minutes"],
        help="trainer.max_time_minutes of the fine-tune (the loop stops after the step that "
        "passes it, so leave room below the 10-minute target)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=FINETUNE_DEFAULTS["threads"],
        help="torch threads for fine-tuning and evaluation (default 1: see FINETUNE_DEFAULTS)",
    )
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any further `stt finetune` override (repeatable)",
    )
    parser.add_argument("--lm", type=Path, default=Path("stt/assets/default/lm.bin"))
    parser.add_argument("--no-beam", action="store_true", help="greedy only")
    parser.add_argument("--name", default="accent", help="bench/results/NAME.json and .png")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(args.threads)
    work = args.work
    run_dir = args.run_dir or work / "runs" / "accent-ft"

    ensure_corpus(work)
    filtered = {
        name: ensure_without_accent(
            work / "synth" / f"{split}.jsonl", work / "accent" / name, ACCENT
        )
        for split, name in (("train", "base_train.jsonl"), ("dev", "orig_dev.jsonl"))
    }
    print(f"accent-free manifests: {filtered}")
    base = ensure_base(work, args.base)
    accent_dir = ensure_accent_corpus(work)

    adapt_path = work / "accent" / "adapt.jsonl"
    adapt, dev, test, voices = accent_sets(accent_dir, adapt_path, args.adapt_minutes)
    base_voices = set(speakers(read_manifest(work / "accent" / "base_train.jsonl")))
    heard = sorted(base_voices & (set(voices["adapt"]) | set(voices["test"])))
    if heard:
        raise BenchError(f"the base model's training data has accent voices: {', '.join(heard)}")

    settings = {
        "lr": args.lr,
        "freeze_blocks": args.freeze_blocks,
        "mix_ratio": args.mix_ratio,
        "patience": args.patience,
        "max_minutes": args.max_minutes,
        "threads": args.threads,
    }
    command = finetune_command(work, base, run_dir, settings, args.extra)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run: the timing must not include a resumed one
    load = {"before": [round(x, 2) for x in os.getloadavg()]}
    start = time.monotonic()
    run(command, threads=args.threads)
    command_minutes = (time.monotonic() - start) / 60
    load["after"] = [round(x, 2) for x in os.getloadavg()]
    report = json.loads((run_dir / "finetune_report.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    train_minutes = float(report["train"]["wall_minutes"])

    sets = {
        "accent_test": accent_dir / "test.jsonl",
        "orig_dev": work / "accent" / "orig_dev.jsonl",
        "an4_dev": work / "an4" / "dev.jsonl",
        "fsdd_dev": work / "fsdd" / "dev.jsonl",
    }
    lm = None if args.no_beam else args.lm
    if lm is not None and not lm.is_file():
        raise BenchError(f"{lm}: no language model (or pass --no-beam)")
    checkpoint = Path(report["checkpoint"])
    before = evaluate(base, sets, run_dir / "bench_eval_before", lm)
    after = evaluate(checkpoint, sets, run_dir / "bench_eval_after", lm)
    results = compare(before, after)
    targets = judge(results, train_minutes)

    minutes = lambda utts: round(sum(u.duration for u in utts) / 60, 2)  # noqa: E731
    base_note = args.base_note or (
        "accent-base: model=medium, the fixed recipe" if args.base is None else str(base)
    )
    payload = {
        "benchmark": "accent",
        "command": "python scripts/bench_accent.py " + shlex.join(sys.argv[1:]),
        "base": base_note,
        "base_checkpoint": str(base),
        "base_model": describe_checkpoint(base),
        "base_train_command": shown(base_train_command(work)),
        "accent": ACCENT,
        "accent_synth_command": shown(accent_synth_command(work)),
        "finetune_command": shown(command),
        "finetune_settings": settings | {"extra": args.extra},
        "finetune_settings_choice": SETTINGS_CHOICE,
        "data": {
            "adapt": {
                "manifest": str(adapt_path),
                "utterances": len(adapt),
                "minutes": minutes(adapt),
            },
            "accent_dev": {
                "manifest": str(accent_dir / "dev.jsonl"),
                "utterances": len(dev),
                "minutes": minutes(dev),
            },
            "accent_test": {
                "manifest": str(sets["accent_test"]),
                "utterances": len(test),
                "minutes": minutes(test),
            },
            "original_dev": {n: str(p) for n, p in sets.items() if n != "accent_test"},
            "mix_manifests": report["train"]["mix_manifests"],
        },
        "voices": voices,
        "finetune": {
            "train_wall_minutes": train_minutes,
            "command_wall_minutes": round(command_minutes, 2),
            "note": "train_wall_minutes is the training loop (with its per-epoch dev evaluations); "
            "the command adds the before/after greedy evaluations of stt finetune",
            # Other jobs on the machine slow the run down: the 1/5/15-minute load averages.
            "load_average": load,
            "stop_reason": report["train"]["stop_reason"],
            "epochs": report["train"]["epoch"],
            "steps": report["train"]["step"],
            "best_accent_dev_loss": result["best_metric"],
            "added_chars": report["added_chars"],
            "checkpoint": str(checkpoint),
        },
        "decoders": {
            "greedy": "argmax, blanks and repeats removed",
            **(
                {
                    "beam+lm": f"pyctcdecode with {lm} and the shipped model's decoder.yaml "
                    "(alpha, beta, beam width), not retuned"
                }
                if lm
                else {}
            ),
        },
        "results": results,
        "targets": targets,
    }
    path = write_results(args.name, payload)
    png = plot(
        results,
        f"Fine-tuning on {minutes(adapt):g} min of {ACCENT} English "
        f"({train_minutes:.1f} min on this CPU); base: {base_note}",
        RESULTS_DIR / f"{args.name}.png",
    )
    g = results["greedy"]
    for name, row in g.items():
        print(f"{name:>12}: WER {100 * row['wer_before']:6.2f}% -> {100 * row['wer_after']:6.2f}%")
    for key, t in targets.items():
        if isinstance(t, dict):
            print(f"{key}: {t['value']} ({'met' if t['met'] else 'NOT met'})")
    print(f"-> {path}, {png}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench_accent: {exc}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as exc:
        print(f"bench_accent: {shlex.join(exc.cmd)} failed ({exc.returncode})", file=sys.stderr)
        sys.exit(1)
