"""The `stt` command: thin subcommands over the library's functions.

Each job takes Hydra-style ``key=value`` overrides of its ``conf/`` file after its options.
User errors (:class:`stt.errors.STTError`) and file-system failures (a full disk, a read-only
folder: ``OSError``) print one line and exit 1; Ctrl-C prints ``stt: interrupted`` and exits 130;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import sys
from pathlib import Path

from stt.errors import ConfigError, STTError

EPILOG_OVERRIDES = (
    "Any key of the job's config file can be overridden after the options, Hydra-style: "
    "key=value, a.b=value, list=[a,b]."
)


def _add_overrides(parser: argparse.ArgumentParser, config_name: str) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help=f"overrides of conf/{config_name}.yaml",
    )


def flag_overrides(args: argparse.Namespace, keys: dict[str, str]) -> list[str]:
    """The config overrides that the options given on the command line stand for.

    ``keys`` maps an option's ``dest`` to the config key it sets (``"hours": "hours"`` gives
    ``hours=2``), or to an override with ``{}`` where the value goes (``"format": "format='{}'"``,
    quoted so that a comma does not read as a sweep), or with no value at all for a switch
    (``"no_progress": "progress=false"``). Options not given (None, or False for a switch) add
    nothing; a list is written ``[a,b]``. The options become overrides, rather than being applied
    after composing, so that the job's config file stays the one place defaults live and the
    overrides typed after them can still change them.
    """
    overrides = []
    for dest, key in keys.items():
        value = getattr(args, dest)
        if value is None or value is False:
            continue
        if isinstance(value, list):
            value = f"[{','.join(map(str, value))}]"
        overrides.append(key.format(value) if "=" in key else f"{key}={value}")
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stt",
        description="stt: a WaveNet speech-to-text engine (MFCC -> dilated convolutions -> CTC).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_synth_parser(sub)
    add_data_parser(sub)
    add_train_parser(sub)
    add_finetune_parser(sub)
    add_eval_parser(sub)
    add_lm_parser(sub)
    add_transcribe_parser(sub)
    add_export_parser(sub)
    add_serve_parser(sub)
    add_demo_parser(sub)
    return parser


def add_synth_parser(sub: argparse._SubParsersAction) -> None:
    """`stt synth OUT_DIR`."""
    synth = sub.add_parser(
        "synth",
        help="synthesize a multi-voice, multi-accent speech corpus with espeak-ng and flite",
        description=(
            "Synthesize train/dev/test manifests and 16 kHz FLAC audio from sentences of Debian's "
            "fortunes and wordnet-base, spoken by espeak-ng accents x voice variants and flite "
            "voices. The test split uses voices never heard in train/dev. Deterministic for a "
            "seed; rerunning completes an interrupted corpus and skips finished audio."
        ),
        epilog=EPILOG_OVERRIDES,
    )
    synth.add_argument("out_dir", type=Path, help="output folder (manifests + audio/)")
    synth.add_argument("--hours", type=float, help="hours of train+dev+test audio (default 1)")
    synth.add_argument("--seed", type=int, help="random seed (default 1)")
    synth.add_argument("--workers", type=int, help="parallel workers (default: CPU cores)")
    synth.add_argument(
        "--holdout-accent",
        action="append",
        dest="holdout_accents",
        metavar="ACCENT",
        help="keep this accent out of train/dev/test; write holdout_adapt/holdout_test instead "
        "(repeatable; e.g. scottish)",
    )
    synth.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_overrides(synth, "synth")
    synth.set_defaults(func=cmd_synth)


SYNTH_FLAGS = {
    "hours": "hours",
    "seed": "seed",
    "workers": "workers",
    "holdout_accents": "holdout_accents",
    "no_progress": "progress=false",
}


def cmd_synth(args: argparse.Namespace) -> int:
    from stt.config import compose, to_dataclass
    from stt.data.synth import SynthConfig, describe, synthesize_corpus

    overrides = [f"out_dir={args.out_dir}"] + flag_overrides(args, SYNTH_FLAGS)
    cfg = to_dataclass(compose("synth", overrides + list(args.overrides)), SynthConfig)
    prepare_output_dir(Path(cfg.out_dir), "OUT_DIR")
    summary = synthesize_corpus(cfg)
    print(describe(summary))
    return 1 if summary.failed else 0


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """`stt data ACTION`: the manifest tools below."""
    data = sub.add_parser("data", help="manifest tools: validate, import corpora")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    add_validate_parser(data_sub)
    add_split_parser(data_sub)
    add_decode_parser(data_sub)
    add_import_parser(data_sub)


def add_validate_parser(data_sub: argparse._SubParsersAction) -> None:
    """`stt data validate MANIFEST...`."""
    validate = data_sub.add_parser(
        "validate",
        help="check manifests: lines, audio, durations, characters",
        description=(
            "Check NeMo-style JSONL manifests: every line well-formed, audio present and "
            "readable, durations matching the audio, transcripts within the character "
            "vocabulary. Prints counts, hours, speakers and accents. Exit status 1 if anything "
            "is wrong."
        ),
    )
    validate.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST")
    validate.add_argument("--no-audio", action="store_true", help="skip the audio checks")
    validate.add_argument(
        "--tolerance", type=float, default=0.1, help="allowed duration mismatch in s (0.1)"
    )
    validate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    validate.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from stt.data.validate import validate_manifest

    all_ok = True
    for manifest in args.manifests:
        try:
            report = validate_manifest(
                manifest,
                check_audio=not args.no_audio,
                duration_tolerance=args.tolerance,
                progress=not args.no_progress,
            )
        except STTError as exc:
            print(f"{exc}", file=sys.stderr)
            all_ok = False
            continue
        print(report.format())
        all_ok &= report.ok
    return 0 if all_ok else 1


def add_split_parser(data_sub: argparse._SubParsersAction) -> None:
    """`stt data split MANIFEST OUT_DIR`."""
    split = data_sub.add_parser(
        "split",
        help="split a manifest into speaker-disjoint train and dev manifests",
        description=(
            "Hold out whole speakers (drawn at random with --seed) as a dev set holding about "
            "--dev-fraction of the audio. Speakers come from the 'speaker' key, or from the "
            "first group of --speaker-pattern matched against each audio file name."
        ),
    )
    split.add_argument("manifest", type=Path)
    split.add_argument("out_dir", type=Path, help="writes train.jsonl and dev.jsonl here")
    split.add_argument("--dev-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=1)
    split.add_argument(
        "--speaker-pattern",
        metavar="REGEX",
        help=r"e.g. '^([^_]+)_' for AN4's fash_an251.flac, '^\d+_([a-z]+)_' for FSDD",
    )
    split.add_argument(
        "--dev-speakers",
        nargs="+",
        metavar="SPEAKER",
        help="hold out exactly these speakers (or pattern groups, e.g. books) instead of drawing",
    )
    split.set_defaults(func=cmd_split)


def cmd_split(args: argparse.Namespace) -> int:
    from stt.data.manifest import read_manifest
    from stt.data.split import split_manifest

    prepare_output_dir(args.out_dir, "OUT_DIR")
    train, dev = split_manifest(
        args.manifest,
        args.out_dir,
        args.dev_fraction,
        args.seed,
        args.speaker_pattern,
        args.dev_speakers,
    )
    for path in (train, dev):
        utts = read_manifest(path)
        speakers = {u.speaker for u in utts}
        hours = sum(u.duration for u in utts) / 3600
        print(f"{path}: {len(utts)} utterances, {hours:.3f} h, {len(speakers)} speakers")
    return 0


def add_decode_parser(data_sub: argparse._SubParsersAction) -> None:
    """`stt data decode MANIFEST OUT_DIR`."""
    decode = data_sub.add_parser(
        "decode",
        help="FLAC copies of a manifest's compressed (Opus, MP3) audio, for fast training reads",
        description=(
            "Decode every compressed file of MANIFEST once into OUT_DIR/audio/*.flac (16-bit, "
            "16 kHz) and write OUT_DIR/<manifest name> pointing at the copies; FLAC and WAV "
            "files are referenced where they are. Reruns redo only missing or stale copies."
        ),
    )
    decode.add_argument("manifest", type=Path)
    decode.add_argument("out_dir", type=Path)
    decode.add_argument("--workers", type=int, help="parallel decoders (default: CPU cores)")
    decode.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    decode.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    from stt.data.decoded import decode_manifest

    prepare_output_dir(args.out_dir, "OUT_DIR")
    out = decode_manifest(args.manifest, args.out_dir, args.workers, not args.no_progress)
    print(f"{out}: decoded copies in {args.out_dir / 'audio'}")
    return 0


def add_import_parser(data_sub: argparse._SubParsersAction) -> None:
    """`stt data import CORPUS SRC OUT`."""
    from stt.data.importers import IMPORTERS

    importer = data_sub.add_parser(
        "import",
        help="convert a standard corpus layout into manifests",
        description=(
            "Convert a corpus in its standard on-disk layout into NeMo-style JSONL manifests "
            "(one per split) in OUT. Audio stays where it is unless it must be converted."
        ),
    )
    importer.add_argument("corpus", choices=sorted(IMPORTERS), help="corpus layout")
    importer.add_argument("src", type=Path, help="the corpus's root folder")
    importer.add_argument("out", type=Path, help="folder for the manifests")
    importer.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    importer.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from stt.data.importers import import_corpus

    prepare_output_dir(args.out, "OUT")
    written = import_corpus(args.corpus, args.src, args.out, progress=not args.no_progress)
    for path in written:
        print(path)
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """`stt train key=value...`."""
    train = sub.add_parser(
        "train",
        help="train the WaveNet CTC model until the dev metric plateaus",
        description=(
            "Train on NeMo JSONL manifests until the monitored dev metric (trainer.monitor) stops "
            "improving by trainer.min_delta for trainer.patience evaluations, or max_epochs / "
            "max_steps / max_time_minutes. Checkpoints run_dir/last.pt and best.pt are written "
            "atomically; rerunning the same command continues exactly where it stopped "
            "(trainer.resume=auto). Under `torchrun --nproc_per_node=N stt train ...` it trains "
            "with PyTorch DDP. Example: stt train model=small "
            "data.train=[corpus/train.jsonl] data.dev=[corpus/dev.jsonl] run_dir=runs/small"
        ),
        epilog=EPILOG_OVERRIDES + " Groups: model=small|base|causal, augment=default|none.",
    )
    _add_overrides(train, "train")
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from stt.config import compose, to_dataclass
    from stt.training.config import TrainConfig
    from stt.training.trainer import train

    cfg = to_dataclass(compose("train", list(args.overrides)), TrainConfig)
    result = train(cfg)
    print(f"stopped: {result.stop_reason}")
    for name, figures in result.dev.items():
        print(
            f"  {name}: loss {figures['loss']:.3f}  WER {100 * figures['wer']:.2f}%  "
            f"CER {100 * figures['cer']:.2f}%"
        )
    print(f"checkpoints: {result.run_dir}/best.pt, {result.run_dir}/last.pt")
    return 0


def add_finetune_parser(sub: argparse._SubParsersAction) -> None:
    """`stt finetune key=value...`."""
    finetune = sub.add_parser(
        "finetune",
        help="adapt a trained model to new data (e.g. an accent) and report before/after WER",
        description=(
            "Fine-tune a checkpoint (init_from=PATH, or init_from=default for the shipped model) "
            "on new manifests (data.train, and data.dev; without data.dev, "
            "finetune.dev_fraction of data.train's audio, whole speakers, is held out as the "
            "dev set and, unless finetune.eval_new is given, as the new test set), with the "
            "training loop of `stt train`: "
            "same plateau stop, max_epochs / max_steps / trainer.max_time_minutes, resume. "
            "The vocabulary is the checkpoint's, grown by characters of the new transcripts it "
            "lacks (and finetune.extra_chars); the CTC head gains rows for them, old rows kept. "
            "finetune.freeze_input_proj / finetune.freeze_blocks=N fix the front end and the "
            "first N blocks; finetune.mix_manifests with finetune.mix_ratio (0.3 = 30% of the "
            "new data's utterances) mixes original data in. Defaults: optim.lr=5e-4, "
            "optim.warmup_steps=50. The starting and fine-tuned models are evaluated (greedy) on "
            "finetune.eval_new and finetune.eval_original; run_dir/finetune_report.json and .md "
            "compare them. Example: stt finetune init_from=default "
            "data.train=[accent/adapt.jsonl] data.dev=[accent/dev.jsonl] "
            "finetune.eval_new=[accent/test.jsonl] finetune.eval_original=[corpus/dev.jsonl] "
            "finetune.mix_manifests=[corpus/train.jsonl] run_dir=runs/ft"
        ),
        epilog=EPILOG_OVERRIDES + " Groups as for `stt train` (the model comes from init_from).",
    )
    _add_overrides(finetune, "finetune")
    finetune.set_defaults(func=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from stt.config import compose, to_dataclass
    from stt.training.config import TrainConfig
    from stt.training.finetune import change_sentence, finetune

    cfg = to_dataclass(compose("finetune", list(args.overrides)), TrainConfig)
    report = finetune(cfg)
    if not report:  # a DDP rank other than 0
        return 0
    print(f"stopped: {report['train']['stop_reason']}")
    if report["added_chars"]:
        print(f"characters added: {' '.join(report['added_chars'])}")
    for group, after in report["after"].items():
        before = report["before"].get(group, {})
        print(
            f"  {group}: WER {100 * before['wer']:.2f}% -> {100 * after['wer']:.2f}%  "
            f"CER {100 * before['cer']:.2f}% -> {100 * after['cer']:.2f}%"
        )
        if group in report["wer_change"]:
            print(f"    {change_sentence(report['wer_change'][group])}")
    print(f"checkpoint: {report['checkpoint']}")
    print(f"report: {cfg.run_dir}/finetune_report.md")
    return 0


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """`stt eval CHECKPOINT MANIFEST...`."""
    evaluate = sub.add_parser(
        "eval",
        help="WER/CER report of a checkpoint on test manifests (greedy and/or beam+LM)",
        description=(
            "Run a checkpoint on one or more manifests (each a named test set) and write "
            "report.json, report.md, utterances.jsonl (reference, hypothesis, aligned diff) and "
            "PNG plots to --out. Greedy and beam results come side by side from the same model "
            "outputs. With --multirun, comma-separated values sweep the beam decoder on all "
            "the manifests, scored by their mean WER (e.g. decoder.alpha=0.3,0.6,0.9 "
            "decoder.beta=0,1,2), and the best are "
            "saved as decoder.yaml beside the checkpoint, where stt eval and stt transcribe "
            "pick them up."
        ),
        epilog=EPILOG_OVERRIDES,
    )
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument(
        "inputs", nargs="+", metavar="MANIFEST|key=value", help="test manifests, then overrides"
    )
    evaluate.add_argument("--out", type=Path, help="report folder (default runs/eval)")
    evaluate.add_argument(
        "--decoders", nargs="+", choices=["greedy", "beam"], help="decoders to compare"
    )
    evaluate.add_argument("--lm", type=Path, help="KenLM model for beam search (lm.bin)")
    evaluate.add_argument("--beam-width", type=int)
    evaluate.add_argument("--strict", action="store_true", help="stop at the first bad input")
    evaluate.add_argument("--multirun", action="store_true", help="sweep decoder settings")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.add_argument(
        "--backend", choices=("auto", "torch", "onnx", "torchscript"),
        help="what runs the model: a checkpoint (torch) or a file made by stt export (onnx, "
        "torchscript); default auto: by CHECKPOINT's suffix",
    )  # fmt: skip
    evaluate.set_defaults(func=cmd_eval, overrides=[])


EVAL_FLAGS = {
    "out": "out_dir",
    "backend": "backend",
    "decoders": "decoders",
    "strict": "strict=true",
    "no_progress": "progress=false",
}


def cmd_eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from stt.config import compose, to_dataclass
    from stt.decoding import resolve_decoder
    from stt.evaluate import EvalConfig, run_eval, tune_decoder

    manifests = [a for a in args.inputs if "=" not in a]
    overrides = [a for a in args.inputs if "=" in a] + list(args.overrides)
    if not manifests:
        raise ConfigError("give at least one test manifest")
    if args.out:
        prepare_output_dir(args.out, "--out")
    base = [f"checkpoint={args.checkpoint}", f"manifests=[{','.join(manifests)}]"]
    base += flag_overrides(args, EVAL_FLAGS) + beam_overrides(args.lm, args.beam_width)
    given = {o.split("=", 1)[0].lstrip("+~") for o in base + overrides}

    def build(job_overrides: list[str]) -> EvalConfig:
        cfg = to_dataclass(compose("eval", base + job_overrides), EvalConfig)
        explicit = {"kind": "beam", **given_decoder_settings(cfg.decoder, given)}
        return replace(cfg, decoder=resolve_decoder(cfg.checkpoint, explicit))

    if args.multirun:
        grid, fixed = sweep_grid(overrides)
        cfg = build(fixed)
        best, trials = tune_decoder(cfg, grid)
        for trial in trials:
            print("  ".join(f"{k}={v:.4g}" for k, v in trial.items()))
        print("best: " + "  ".join(f"{k}={best[k]}" for k in grid[0]))
        cfg = replace(cfg, decoder=replace(cfg.decoder, **{k: best[k] for k in grid[0]}))
    else:
        cfg = build(overrides)
    report = run_eval(cfg)
    for label, entry in report["decoders"].items():
        overall = entry["overall"]
        print(
            f"{label:>8}: WER {100 * overall['wer']:.2f}%  CER {100 * overall['cer']:.2f}%  "
            f"RTFx {overall['rtfx']:.0f}"
        )
        for name, f in entry["sets"].items():
            print(f"          {name}: WER {100 * f['wer']:.2f}%  CER {100 * f['cer']:.2f}%")
    for name, s in report["sets"].items():
        skipped = s["bad_manifest_lines"] + s["unreadable_audio"]
        if skipped:
            print(
                f"{name}: {skipped} utterance(s) skipped ({s['bad_manifest_lines']} malformed "
                f"line(s), {s['unreadable_audio']} unreadable audio file(s)): see the warnings"
            )
        if s["unscorable_utterances"]:
            print(
                f"{name}: {s['unscorable_utterances']} reference(s) with characters the model "
                "cannot emit: see the warnings"
            )
    print(f"report: {cfg.out_dir}/report.md")
    return 0


def beam_overrides(lm: Path | None, beam_width: int | None) -> list[str]:
    """``decoder.*`` overrides for --lm (with the unigram list beside it) and --beam-width."""
    overrides = []
    if lm:
        overrides.append(f"decoder.lm={lm}")
        unigrams = lm.parent / "unigrams.txt"
        if unigrams.exists():
            overrides.append(f"decoder.unigrams={unigrams}")
    if beam_width:
        overrides.append(f"decoder.beam_width={beam_width}")
    return overrides


def given_decoder_settings(decoder, given: set[str]) -> dict:
    """The fields of ``decoder`` that the command line set (``decoder.KEY`` in ``given``): the
    explicit settings, laid over the tuned ones by :func:`stt.decoding.resolve_decoder`."""
    from dataclasses import fields

    named = [f.name for f in fields(decoder) if f"decoder.{f.name}" in given]
    return {name: getattr(decoder, name) for name in named}


def sweep_grid(overrides: list[str]) -> tuple[list[dict], list[str]]:
    """Split overrides into a sweep grid and the fixed ones.

    The grid holds the runs Hydra's basic sweeper would make: every combination of the swept
    keys' values (``a,b``, ``choice(a,b)``, ``range(start,stop,step)``), the first key varying
    slowest, as ``{"alpha": 0.3, "beta": 0}`` dicts (``decoder.`` dropped, values numbers:
    ints where written as ints). A key swept twice keeps its first place and its last values,
    as in Hydra.
    """
    from itertools import product

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not sweeps:
        raise ConfigError("--multirun needs at least one key=a,b,c sweep")
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    values: dict[str, list[str]] = {}
    for sweep in sweeps:
        if not sweep.is_discrete_sweep():
            raise ConfigError(
                f"--multirun cannot list the values of {sweep.input_line}: "
                "give key=a,b,c, choice(a,b) or range(start,stop,step)"
            )
        values[sweep.get_key_element()] = list(sweep.sweep_string_iterator())
    keys = [key.removeprefix("decoder.") for key in values]
    grid = [
        dict(zip(keys, map(_number, combination), strict=True))
        for combination in product(*values.values())
    ]
    return grid, fixed


def _number(text: str) -> int | float:
    """A swept value: an int if it is written as one (``beam_width=64,128`` must stay whole in
    the decoder.yaml it tunes), else a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def add_lm_parser(sub: argparse._SubParsersAction) -> None:
    """`stt lm ACTION`: language-model tools."""
    lm = sub.add_parser("lm", help="language models for beam search")
    lm_sub = lm.add_subparsers(dest="lm_command", metavar="ACTION", required=True)
    add_lm_build_parser(lm_sub)


def add_lm_build_parser(lm_sub: argparse._SubParsersAction) -> None:
    """`stt lm build TEXT... OUT`."""
    lm_build = lm_sub.add_parser(
        "build",
        help="build a KenLM n-gram model from text files",
        description=(
            "Normalise the text files with stt's normaliser, then build an ARPA and a binary "
            "KenLM model with KenLM's lmplz and build_binary, plus the unigram list "
            "pyctcdecode wants, into OUT (lm.arpa, lm.bin, unigrams.txt, lm.json)."
        ),
    )
    lm_build.add_argument("texts", nargs="+", type=Path, metavar="TEXT")
    lm_build.add_argument("out", type=Path, help="output folder")
    lm_build.add_argument("--order", type=int, default=3, help="n-gram order, 2-6 (3)")
    lm_build.add_argument(
        "--memory", default="20%", help="memory bound for lmplz/build_binary -S (20%%, or 1G)"
    )
    lm_build.add_argument(
        "--prune", type=int, nargs="+", metavar="N", help="lmplz --prune counts per order"
    )
    lm_build.add_argument(
        "--quantize",
        type=int,
        metavar="BITS",
        help="store probabilities in BITS bits (8 is about a third of the size; default: off)",
    )
    lm_build.add_argument("--no-progress", action="store_true")
    lm_build.set_defaults(func=cmd_lm_build)


def cmd_lm_build(args: argparse.Namespace) -> int:
    from stt.lm import build_lm

    prepare_output_dir(args.out, "OUT")
    artifacts = build_lm(
        args.texts,
        args.out,
        order=args.order,
        memory=args.memory,
        prune=args.prune,
        progress=not args.no_progress,
        quantize_bits=args.quantize,
    )
    print(
        f"{artifacts.order}-gram from {artifacts.sentences} sentences ({artifacts.words} words): "
        f"{artifacts.binary}, {artifacts.arpa}, {artifacts.unigrams}"
    )
    return 0


def add_transcribe_parser(sub: argparse._SubParsersAction) -> None:
    """`stt transcribe PATH...`."""
    transcribe = sub.add_parser(
        "transcribe",
        help="transcribe audio files to text, timestamps and subtitles",
        description=(
            "Transcribe audio files (any format soundfile reads, any sample rate, any length) "
            "with a checkpoint (--model) or the shipped default model. PATH may be a file, a "
            "folder (searched recursively for audio files), a glob pattern or a .jsonl manifest. "
            "Without --output-dir or --format the transcript goes to stdout ('path: text' lines "
            "for several files); otherwise each file's transcript is written as "
            "OUT/<name>.<format>. A file that cannot be read is reported on one line and the "
            "others are still transcribed; the exit status is then 1. Tuned decoder settings "
            "saved as decoder.yaml beside the checkpoint (stt eval --multirun) are used unless "
            "overridden."
        ),
        epilog=EPILOG_OVERRIDES + " E.g. window_seconds=60 max_segment_words=8 decoder.alpha=0.7",
    )
    transcribe.add_argument(
        "inputs", nargs="+", metavar="PATH|key=value", help="audio files, folders, globs, "
        "manifests, then overrides of conf/transcribe.yaml",
    )  # fmt: skip
    transcribe.add_argument("--model", metavar="CHECKPOINT", help="default: the shipped model")
    transcribe.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx", "torchscript"),
        default="auto",
        help="what runs the model: torch (a checkpoint), onnx (onnxruntime) or torchscript (a "
        "file made by stt export); auto (default): by --model's suffix (.onnx, .ts, else torch)",
    )
    transcribe.add_argument(
        "--lm", type=Path, help="KenLM model (lm.bin) for beam search; implies beam search"
    )
    transcribe.add_argument("--beam-width", type=int, help="beams kept; implies beam search")
    transcribe.add_argument(
        "--hotwords",
        nargs="+",
        metavar="WORD",
        help="words to favour (put after the PATHs); implies beam search",
    )
    transcribe.add_argument(
        "--format",
        metavar="FMT",
        help="txt, json, srt, vtt, tsv, several comma-separated, or all (default with "
        "--output-dir: all)",
    )
    transcribe.add_argument("--output-dir", type=Path, help="folder for the transcript files")
    transcribe.add_argument("--batch-size", type=int, help="files run through the model together")
    transcribe.add_argument("--device", help="cpu, cuda or auto (default cpu)")
    transcribe.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    transcribe.add_argument(
        "--stream",
        action="store_true",
        help="live transcription with a causal model (default: the shipped streaming model) of "
        "one PATH: a file, - (raw s16le 16 kHz mono PCM on stdin) or mic: (the microphone, if "
        "the sounddevice package is installed); prints the partial text as it changes (one "
        "updating line on a terminal, else one line per change), then the final text",
    )
    transcribe.add_argument(
        "--chunk-ms", type=float, default=100.0, help="with --stream: audio per step (100 ms)"
    )
    transcribe.add_argument(
        "--realtime", action="store_true", help="with --stream: read a file at real-time pace"
    )
    transcribe.set_defaults(func=cmd_transcribe, overrides=[])


TRANSCRIBE_FLAGS = {
    "model": "checkpoint",
    "format": "format='{}'",  # quoted: a comma would read as a sweep
    "output_dir": "output_dir",
    "batch_size": "batch_size",
    "device": "device",
    "no_progress": "progress=false",
}


def cmd_transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stt.config import compose, to_dataclass
    from stt.transcribe import TranscribeConfig, find_audio, load_model
    from stt.writers import WRITERS, output_stems, parse_formats

    # An argument is an override if it has "=" and is not an existing file.
    paths = [a for a in args.inputs if "=" not in a or Path(a).exists()]
    overrides = [a for a in args.inputs if a not in paths] + list(args.overrides)
    base = flag_overrides(args, TRANSCRIBE_FLAGS) + beam_overrides(args.lm, args.beam_width)
    if args.hotwords:
        quoted = [f'"{w}"' if "'" in w else f"'{w}'" for w in args.hotwords]
        base.append(f"decoder.hotwords=[{','.join(quoted)}]")
    cfg = to_dataclass(compose("transcribe", base + overrides), TranscribeConfig)
    given = {o.split("=", 1)[0].lstrip("+~") for o in base + overrides}
    # Only decoder settings given here override the tuned ones saved beside the checkpoint.
    decoder = given_decoder_settings(cfg.decoder, given)
    if {"lm", "beam_width", "hotwords"} & set(decoder) and "kind" not in decoder:
        decoder["kind"] = "beam"
    write = cfg.output_dir is not None or cfg.format is not None
    formats = parse_formats(cfg.format) if write else []
    out_dir = Path(cfg.output_dir or ".")
    if not paths:
        raise ConfigError("give at least one audio file, folder, glob pattern or manifest")
    if write:  # said once, before any work, rather than once per transcript file
        prepare_output_dir(out_dir, "--output-dir", create=True)
    if args.stream and args.backend not in ("auto", "torch"):
        raise ConfigError(f"--stream runs PyTorch: --backend {args.backend} is for files")
    if args.stream:
        return transcribe_live(args, cfg, decoder, paths, formats, out_dir)
    files, problems = find_audio(paths)
    for problem in problems:
        print(f"stt: error: {problem}", file=sys.stderr)
    failed = len(problems)
    if not files:
        return 1
    stems = dict(zip(files, output_stems(files), strict=True))
    transcriber = load_model(
        cfg.checkpoint, device=cfg.device, decoder=decoder, backend=args.backend,
        **cfg.transcriber_kwargs(),
    )  # fmt: skip
    with transcriber:
        results = transcriber.transcribe_many(files, cfg.batch_size, progress=cfg.progress)
        for path, result in results:
            if isinstance(result, STTError):
                tqdm.write(f"stt: error: {result}", file=sys.stderr)
                failed += 1
                continue
            if not write:
                print(result.text if len(files) == 1 else f"{path}: {result.text}", flush=True)
                continue
            for fmt in formats:
                target = out_dir / f"{stems[path]}.{fmt}"
                try:
                    WRITERS[fmt](result, target)
                except OSError as exc:
                    tqdm.write(f"stt: error: {target}: cannot write ({exc.strerror or exc})",
                               file=sys.stderr)  # fmt: skip
                    failed += 1
    return 1 if failed else 0


def prepare_output_dir(folder: Path, option: str, create: bool = False) -> None:
    """Say in one line, before any work, why ``folder`` cannot hold the outputs (a file is in
    the way, a read-only parent); with ``create``, make it."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: is a file, not a folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {folder}: cannot create it, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: {existing} is not writable")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{option} {folder}: cannot create ({describe_os_error(exc)})"
            ) from None


def transcribe_live(args, cfg, decoder: dict, paths: list[str], formats, out_dir: Path) -> int:
    """`stt transcribe --stream`: partial results as they change, then the final text."""
    import shutil

    from stt.audio import SAMPLE_RATE
    from stt.streaming import audio_chunks, load_streaming_model, paced, transcribe_stream
    from stt.transcript import Transcript
    from stt.writers import WRITERS

    if len(paths) != 1:
        raise ConfigError("--stream takes one input: a file, - (PCM on stdin) or mic:")
    if not args.chunk_ms > 0:
        raise ConfigError(f"--chunk-ms must be positive, got {args.chunk_ms:g}")
    chunks = audio_chunks(paths[0], max(1, round(args.chunk_ms * SAMPLE_RATE / 1000)))
    tty = sys.stdout.isatty()
    transcriber = load_streaming_model(
        cfg.checkpoint, decoder=decoder, max_pause=cfg.max_pause,
        max_segment_seconds=cfg.max_segment_seconds, max_segment_words=cfg.max_segment_words,
    )  # fmt: skip
    with transcriber:
        for result in transcribe_stream(transcriber, paced(chunks) if args.realtime else chunks):
            if isinstance(result, Transcript):
                break
            if tty:  # the tail of the text, on one line rewritten in place
                width = shutil.get_terminal_size().columns - 1
                print(f"\r\x1b[K{result.text[-width:]}", end="", flush=True)
            else:
                print(result.text, flush=True)
    print(f"\r\x1b[K{result.text}" if tty else result.text, flush=True)
    stem = {"-": "stdin", "mic:": "microphone"}.get(paths[0], Path(paths[0]).stem)
    for fmt in formats:
        target = out_dir / f"{stem}.{fmt}"
        try:
            WRITERS[fmt](result, target)
        except OSError as exc:
            raise STTError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """`stt export CHECKPOINT OUT`."""
    export = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (fp32, int8, int4) and TorchScript",
        description=(
            "Write the fused inference model of CHECKPOINT, MFCC front end included (input: "
            "16 kHz waveforms and their lengths; output: CTC log-probs and their lengths; "
            "dynamic batch and length), into the folder OUT: model.onnx, model.int8.onnx "
            "(--quantize int8), model.int4.onnx (--quantize int4), model.ts (TorchScript), "
            "model.json (vocabulary, feature settings, frame rate) and the checkpoint's "
            "decoder.yaml. `stt transcribe --model OUT/model.onnx` runs it with onnxruntime."
        ),
    )
    export.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    export.add_argument("out", type=Path, metavar="OUT", help="output folder")
    export.add_argument(
        "--format", choices=("onnx", "torchscript", "all"), default="all", help="default: all"
    )
    export.add_argument(
        "--quantize",
        metavar="int8|int4",
        help="also write model.int8.onnx (dynamic int8: the fastest on CPU) and/or "
        "model.int4.onnx (4-bit weights: the smallest); both: --quantize int8,int4",
    )
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (17)")
    export.add_argument(
        "--streaming",
        action="store_true",
        help="also write model.streaming.onnx: a causal model's network as one step with its "
        "per-layer caches as inputs and outputs (model.streaming.json says how to drive it)",
    )
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from stt.export import export_model

    prepare_output_dir(args.out, "OUT")
    result = export_model(
        args.checkpoint, args.out, format=args.format, quantize=args.quantize,
        opset=args.opset, streaming=args.streaming,
    )  # fmt: skip
    for path in result.files():
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """`stt serve`."""
    serve = sub.add_parser(
        "serve",
        help="a private speech-to-text server: OpenAI-compatible API, live streams, web page",
        description=(
            "Serve the model on this machine: POST /v1/audio/transcriptions (OpenAI's Whisper "
            "API: point an openai client at base_url http://HOST:PORT/v1), GET /v1/models, "
            "GET /health, live transcription over the WebSocket /v1/stream (16 kHz s16le "
            "PCM in, partial and final JSON out), a web page at / (microphone or file), and "
            "with --wyoming the Wyoming protocol for Home Assistant. Listens on 127.0.0.1 "
            "only unless --host and --allow-remote say otherwise. Needs the serve extra: "
            "pip install 'wavenet-stt[serve]'."
        ),
        epilog=EPILOG_OVERRIDES + " E.g. pause_seconds=1.2 queue=32 (see conf/serve.yaml).",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8000)")
    serve.add_argument(
        "--allow-remote", action="store_true",
        help="needed for a --host other machines can reach; set --api-key too",
    )  # fmt: skip
    serve.add_argument("--model", metavar="CHECKPOINT", help="default: the shipped model")
    serve.add_argument(
        "--streaming-model", metavar="CHECKPOINT",
        help="causal model for /v1/stream (default: the shipped one; none: no live streams)",
    )  # fmt: skip
    serve.add_argument("--device", help="cpu, cuda or auto, for the offline model (cpu)")
    serve.add_argument(
        "--api-key", metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every endpoint but /health "
        "(default: $STT_API_KEY if set)",
    )  # fmt: skip
    serve.add_argument(
        "--max-upload-mb", type=float, help="larger uploads get 413 before being read (100)"
    )
    serve.add_argument(
        "--workers", type=int, help="threads running file transcriptions (2); more queue"
    )
    serve.add_argument(
        "--wyoming", metavar="URI",
        help="also serve Home Assistant's Wyoming protocol at tcp://HOST:PORT (e.g. "
        "tcp://127.0.0.1:10300)",
    )  # fmt: skip
    _add_overrides(serve, "serve")
    serve.set_defaults(func=cmd_serve)


SERVE_FLAGS = {
    "host": "host",
    "port": "port",
    "allow_remote": "allow_remote=true",
    "model": "model",
    "streaming_model": "streaming_model",
    "device": "device",
    "max_upload_mb": "max_upload_mb",
    "workers": "workers",
    "wyoming": "wyoming='{}'",
}


def cmd_serve(args: argparse.Namespace) -> int:
    from stt.config import compose, to_dataclass
    from stt.serve.config import ServeConfig

    overrides = flag_overrides(args, SERVE_FLAGS) + list(args.overrides)
    config = to_dataclass(compose("serve", overrides), ServeConfig)  # checked before loading
    # The key is set as it is, not through an override: a key may hold any character.
    key = args.api_key if args.api_key is not None else os.environ.get("STT_API_KEY") or None
    if key is not None:
        config = dataclasses.replace(config, api_key=key)
    from stt.serve.main import run  # says which of the serve extra is missing, if any

    return run(config)


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """`stt demo`."""
    demo = sub.add_parser(
        "demo",
        help="the end-to-end demo on the embedded default",
        description=(
            "Transcribe the example recordings in examples/ with the shipped model (or --model) "
            "and print transcripts and WER. Without a model: synthesize a few utterances in "
            "several accents and show their manifest, MFCC features and validation report."
        ),
        epilog=EPILOG_OVERRIDES,
    )
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    demo.add_argument(
        "--model",
        type=Path,
        help="transcribe the examples with this checkpoint (default: the shipped model, if any)",
    )
    _add_overrides(demo, "synth")
    demo.set_defaults(func=cmd_demo)


# The demo's corpus: 36 s of speech (0.01 h) shows every stage, and quickly.
DEMO_SYNTH_OVERRIDES = ["hours=0.01", "noise_prob=0.5", "progress=false"]


def cmd_demo(args: argparse.Namespace) -> int:
    from stt.config import compose, to_dataclass
    from stt.data.synth import SynthConfig
    from stt.demo import run_demo, run_transcription_demo
    from stt.transcribe import default_model_path

    if args.model or default_model_path().exists():
        return run_transcription_demo(args.model)
    print("(no trained model ships yet: showing the data pipeline; --model CKPT transcribes)\n")
    overrides = [f"out_dir={args.out}", *DEMO_SYNTH_OVERRIDES, *args.overrides]
    return run_demo(to_dataclass(compose("synth", overrides), SynthConfig))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after options (`stt synth OUT --hours 1 seed=2`): argparse
    # leaves the ones after options unparsed, so gather them here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="stt: %(levelname)s: %(message)s",
    )
    if not args.verbose:  # pyctcdecode narrates every decoder it builds
        logging.getLogger("pyctcdecode").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except STTError as exc:
        print(f"stt: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `stt transcribe ... | head`: the reader left, nothing to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the exit flush cannot fail again
        return 1
    except OSError as exc:  # a full disk, a read-only or missing folder: the user's to fix
        print(f"stt: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stt: interrupted", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system failure: the path, then the system's reason."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOTDIR:
        reason += " (a part of this path is a file)"
    if exc.filename is None:
        return reason
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
