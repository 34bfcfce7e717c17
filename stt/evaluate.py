"""`stt eval`: WER/CER reports for a checkpoint on named test sets, greedy and beam side by side.

The model runs once per set; every requested decoder then decodes the same log-probabilities, so
their figures compare like with like. Metrics come from jiwer; reports are written by
:mod:`stt.report`.

Nothing is taken on trust from the manifest but the reference text: hours and RTFx come from the
samples each file decodes to, files longer than ``window_seconds`` go through the model window by
window (:func:`stt.inference.stream_log_probs`, bounded memory whatever their length), a set
with no usable utterance is an error rather than a WER of 0, and references holding characters
the model cannot emit are counted and reported.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from stt.audio import SAMPLE_RATE, SOUNDFILE_ERRORS, FileReader, open_soundfile, unreadable_audio
from stt.data.manifest import Utterance, iter_manifest_lines
from stt.decoding import DecoderConfig, DecodeResult, build_decoder, save_tuned_decoder
from stt.errors import AudioError, ConfigError, ManifestError
from stt.exported import read_any_model
from stt.inference import (
    InferenceTiming,
    infer_log_probs,
    load_many,
    pick_device,
    plan_windows,
    stream_log_probs,
)
from stt.metrics import ErrorCounts, aligned_diff, error_counts
from stt.model import WaveNetCTC
from stt.report import write_reports
from stt.text import Vocabulary

log = logging.getLogger(__name__)

LOAD_GROUP_SECONDS = 600.0
"""Files up to ``window_seconds`` are read and run through the model this much audio at a time
(38 MB of float32 samples), so a large test set is never all in memory at once."""


@dataclass
class EvalConfig:
    """Settings of ``stt eval`` (mirrors ``conf/eval.yaml``)."""

    checkpoint: str = "???"
    manifests: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # one per manifest; default: folder/stem
    out_dir: str = "runs/eval"
    decoders: list[str] = field(default_factory=lambda: ["greedy"])  # greedy and/or beam
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(kind="beam"))
    max_batch_seconds: float = 200.0
    window_seconds: float = 30.0  # longer files go through the model in windows of this size
    device: str = "auto"
    strict: bool = False  # stop at the first bad manifest line or unreadable file
    backend: str = "auto"  # torch (a checkpoint), onnx or torchscript (stt export); auto: suffix
    progress: bool = True


@dataclass
class TestSet:
    """One manifest's usable utterances with their log-probs, and what could not be used.

    ``durations``: seconds of audio each utterance decodes to (never the manifest's
    ``duration``). ``unscorable_chars``: characters of the references outside the model's
    vocabulary, with their counts, found in ``unscorable_utterances`` utterances."""

    name: str
    path: str
    utterances: list[Utterance]
    log_probs: list[np.ndarray]
    bad_lines: list[str]
    bad_audio: list[str]
    compute_seconds: float
    durations: list[float] = field(default_factory=list)
    unscorable_chars: Counter = field(default_factory=Counter)
    unscorable_utterances: int = 0

    @property
    def seconds(self) -> float:
        return sum(self.durations)


@dataclass
class SetScore:
    """One decoder on one set: counts, speed, and the per-utterance details."""

    counts: ErrorCounts
    audio_seconds: float
    compute_seconds: float  # model forward + decoding
    utterances: list[dict]

    @property
    def rtfx(self) -> float:
        return self.audio_seconds / max(self.compute_seconds, 1e-9)


def set_name(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem


class _CountedFile:
    """A soundfile handle, as :class:`stt.audio.FileReader` reads it, that counts the
    frames it decodes (the file's measured length) and turns a decoder failure part way through
    (a truncated or corrupt file) into an :class:`AudioError`."""

    def __init__(self, path: Path, handle: sf.SoundFile) -> None:
        self.path = path
        self._handle = handle
        self.decoded = 0  # native-rate frames
        self.ended_early = False  # a read returned fewer frames than asked: the file's real end

    def __getattr__(self, name: str):
        return getattr(self._handle, name)

    def read(self, frames: int, **kwargs) -> np.ndarray:
        try:
            data = self._handle.read(frames, **kwargs)
        except SOUNDFILE_ERRORS as exc:
            raise unreadable_audio(self.path, exc) from None
        self.decoded += len(data)
        self.ended_early |= len(data) < frames
        return data

    def seconds(self) -> float:
        """Seconds of audio in the file: what decoded, if it ended before its header said;
        else the header's length (the few samples after the last feature frame are not read)."""
        frames = self.decoded if self.ended_early else self._handle.frames
        return frames / self._handle.samplerate


def _stream_file(
    model: WaveNetCTC, path: Path, device, window_seconds: float
) -> tuple[np.ndarray, float]:
    """Log-probs ``(frames, vocab)`` of a long file, computed window by window, and the seconds
    of audio it decoded to."""
    opened: list[_CountedFile] = []

    def open_reader() -> FileReader:
        opened.append(_CountedFile(path, open_soundfile(path)))
        return FileReader(path, opened[-1])

    with open_soundfile(path) as handle:
        reader = FileReader(path, handle)
        samples, align = reader.samples, reader.up
    plan = plan_windows(model, samples, window_seconds, align=align)
    chunks = list(stream_log_probs(model, open_reader, plan, device))
    return np.concatenate(chunks), opened[-1].seconds()


def _probe(path: Path) -> int | None | AudioError:
    """16 kHz samples the header promises (None: the header does not say), or why the file
    cannot be used."""
    try:
        with open_soundfile(path) as handle:
            return None if handle.frames < 0 else FileReader(path, handle).samples
    except AudioError as exc:
        return exc


def _read_manifest(path: str, strict: bool) -> tuple[list[tuple[int, Utterance]], list[str], int]:
    """The usable lines of a manifest with their numbers, the problems of the others, and the
    number of non-blank lines."""
    utterances, bad_lines, lines = [], [], 0
    for lineno, item in iter_manifest_lines(path):
        lines += 1
        if isinstance(item, ManifestError):
            if strict:
                raise item
            bad_lines.append(str(item))
        else:
            utterances.append((lineno, item))
    return utterances, bad_lines, lines


def _nothing_usable(path: str, lines: int, bad_lines: int, bad_audio: int) -> ManifestError:
    if not lines:
        return ManifestError(f"{path}: no usable utterances (empty manifest)")
    if not bad_audio:
        return ManifestError(f"{path}: no usable utterances ({lines} lines, all bad)")
    return ManifestError(
        f"{path}: no usable utterances ({lines} lines: {bad_lines} malformed, "
        f"{bad_audio} with missing or unreadable audio)"
    )


def unscorable_references(utterances: list[Utterance], vocab: Vocabulary) -> tuple[Counter, int]:
    """Characters of the references that ``vocab`` cannot emit (with their counts) and the
    number of utterances holding any: every one of them is a guaranteed error."""
    chars: Counter = Counter()
    affected = 0
    for utt in utterances:
        oov = [c for c in utt.text if c not in vocab]
        if oov:
            chars.update(oov)
            affected += 1
    return chars, affected


def load_test_set(
    path: str, name: str, model: WaveNetCTC, vocab: Vocabulary, device, cfg: EvalConfig
) -> TestSet:
    """Read a manifest (bad lines counted), run the model over its audio (unreadable files
    counted) and check its references against ``vocab``.

    Files up to ``cfg.window_seconds`` are loaded :data:`LOAD_GROUP_SECONDS` of audio at a time
    and batched; longer ones go window by window, so memory stays bounded whatever the length
    of a file or of the set.

    Raises:
        ManifestError: the manifest is missing or has no usable utterance (or, with
            ``cfg.strict``, has a bad line).
        AudioError: with ``cfg.strict``, the first missing or unreadable audio file.
    """
    numbered, bad_lines, lines = _read_manifest(path, cfg.strict)
    utterances = [utt for _, utt in numbered]
    results, errors, model_seconds = _run_model(path, name, numbered, model, device, cfg)
    bad_audio = [errors[i] for i in sorted(errors)]
    for problem in bad_lines + bad_audio:
        log.warning("%s", problem)
    kept = sorted(results)
    if not kept:
        raise _nothing_usable(path, lines, len(bad_lines), len(bad_audio))
    test_set = TestSet(
        name, path, [utterances[i] for i in kept], [results[i][0] for i in kept],
        bad_lines, bad_audio, model_seconds, durations=[results[i][1] for i in kept],
    )  # fmt: skip
    _note_unscorable(test_set, vocab)
    return test_set


def _run_model(
    path: str,
    name: str,
    numbered: list[tuple[int, Utterance]],
    model: WaveNetCTC,
    device,
    cfg: EvalConfig,
) -> tuple[dict[int, tuple[np.ndarray, float]], dict[int, str], float]:
    """Run the model over the audio of ``numbered`` (line number, utterance) pairs.

    Returns, by index into ``numbered``: the ``(out_frames, vocab)`` log-probs and measured
    seconds of every file that could be read; the one-line problem of every one that could not
    (``path:line: why``); and the model's compute seconds over the whole set. The headers are
    read first so that files up to ``cfg.window_seconds`` can be batched
    :data:`LOAD_GROUP_SECONDS` of audio at a time and longer ones sent window by window.

    Raises:
        AudioError: with ``cfg.strict``, the first missing or unreadable audio file.
    """
    utterances = [utt for _, utt in numbered]
    with ThreadPoolExecutor(4) as pool:
        probes = list(pool.map(_probe, [u.audio_filepath for u in utterances]))
    window_samples = int(cfg.window_seconds * SAMPLE_RATE)
    results: dict[int, tuple[np.ndarray, float]] = {}
    errors: dict[int, str] = {}
    timing = InferenceTiming()
    long_seconds = 0.0
    known = [p for p in probes if isinstance(p, int)]
    bar = tqdm(
        total=sum(known) / SAMPLE_RATE, desc=f"model {name}", unit="audio-s",
        disable=not cfg.progress,
    )  # fmt: skip

    def failed(i: int, exc: AudioError) -> None:
        if cfg.strict:
            raise exc
        errors[i] = f"{path}:{numbered[i][0]}: {exc}"

    def run_group(group: list[int]) -> None:
        waveforms = load_many([utterances[i].audio_filepath for i in group])
        ok = []
        for i, audio in zip(group, waveforms, strict=True):
            if isinstance(audio, AudioError):
                failed(i, audio)
            else:
                ok.append((i, audio))
        log_probs = infer_log_probs(
            model, [w for _, w in ok], device, cfg.max_batch_seconds, timing=timing
        )
        for (i, waveform), lp in zip(ok, log_probs, strict=True):
            results[i] = (lp, len(waveform) / SAMPLE_RATE)
            bar.update(len(waveform) / SAMPLE_RATE)

    try:
        group: list[int] = []
        group_samples = 0
        for i, (utt, probe) in enumerate(zip(utterances, probes, strict=True)):
            if isinstance(probe, AudioError):
                failed(i, probe)
            elif probe is None or probe <= window_samples:
                group.append(i)
                group_samples += probe or 0
                if group_samples >= LOAD_GROUP_SECONDS * SAMPLE_RATE:
                    run_group(group)
                    group, group_samples = [], 0
            else:
                start = time.perf_counter()
                try:
                    results[i] = _stream_file(model, utt.audio_filepath, device, cfg.window_seconds)
                except AudioError as exc:
                    failed(i, exc)
                    continue
                long_seconds += time.perf_counter() - start
                bar.update(probe / SAMPLE_RATE)
        if group:
            run_group(group)
    finally:
        bar.close()
    return results, errors, timing.compute_seconds + long_seconds


def _note_unscorable(test_set: TestSet, vocab: Vocabulary) -> None:
    """Count the references holding characters ``vocab`` cannot emit, and warn: each is a
    certain error, which would otherwise pass for the model's own."""
    chars, affected = unscorable_references(test_set.utterances, vocab)
    if affected:
        listed = " ".join(f"{c!r}x{n}" for c, n in chars.most_common())
        log.warning(
            "%s: %d of %d reference(s) hold characters the model cannot emit, each a certain "
            "error (normalise the text, see stt.text.normalize_text): %s",
            test_set.name, affected, len(test_set.utterances), listed,
        )  # fmt: skip
    test_set.unscorable_chars, test_set.unscorable_utterances = chars, affected


def score_set(test_set: TestSet, results: list[DecodeResult], decode_seconds: float) -> SetScore:
    """Score one decoder's results on one set, utterance by utterance and in total."""
    refs = [u.text for u in test_set.utterances]
    hyps = [r.text for r in results]
    rows = []
    for utt, seconds, ref, hyp in zip(
        test_set.utterances, test_set.durations, refs, hyps, strict=True
    ):
        one = error_counts([ref], [hyp])
        rows.append(
            {
                "audio_filepath": str(utt.audio_filepath),
                "duration": seconds,  # measured, not the manifest's
                "reference": ref,
                "hypothesis": hyp,
                "diff": aligned_diff(ref, hyp),
                "wer": one.wer,
                "cer": one.cer,
                "word_errors": one.word_errors,
                "words": one.words,
            }
        )
    return SetScore(
        error_counts(refs, hyps),
        test_set.seconds,
        test_set.compute_seconds + decode_seconds,
        rows,
    )


def decoder_configs(cfg: EvalConfig) -> dict[str, DecoderConfig]:
    configs = {}
    for kind in cfg.decoders:
        if kind == "greedy":
            configs["greedy"] = DecoderConfig(kind="greedy")
        elif kind == "beam":
            beam = DecoderConfig(**{**vars(cfg.decoder), "kind": "beam"})
            configs["beam+lm" if beam.lm else "beam"] = beam
        else:
            raise ConfigError(f"decoders must be greedy and/or beam, not {kind!r}")
    if not configs:
        raise ConfigError("no decoder to evaluate: set decoders=[greedy,beam]")
    return configs


def decode_timed(decoder, log_probs: list[np.ndarray], frame_seconds: float):
    start = time.perf_counter()
    results = decoder.decode_batch(log_probs, frame_seconds)
    return results, time.perf_counter() - start


def run_eval(cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.checkpoint`` on every manifest with every decoder; write the reports."""
    if not cfg.manifests:
        raise ConfigError("no test sets: give one or more manifests")
    if cfg.names and len(cfg.names) != len(cfg.manifests):
        raise ConfigError("names must have one entry per manifest")
    names = list(cfg.names) or [set_name(m) for m in cfg.manifests]
    if len(set(names)) != len(names):
        raise ConfigError(f"two test sets share a name ({names}); give names=[...]")
    model, vocab = read_any_model(cfg.checkpoint, cfg.backend)
    device = pick_device(cfg.device)
    frame_seconds = model.frame_ms / 1000
    sets = [
        load_test_set(m, n, model, vocab, device, cfg)
        for m, n in zip(cfg.manifests, names, strict=True)
    ]

    scores: dict[str, dict[str, SetScore]] = {}
    for label, dcfg in decoder_configs(cfg).items():
        decoder = build_decoder(vocab, dcfg)
        try:
            scores[label] = {}
            for test_set in sets:
                results, seconds = decode_timed(decoder, test_set.log_probs, frame_seconds)
                scores[label][test_set.name] = score_set(test_set, results, seconds)
        finally:
            decoder.close()
    out_dir = Path(cfg.out_dir)
    report = write_reports(out_dir, cfg, model, sets, scores)
    return report


def tune_decoder(
    cfg: EvalConfig, grid: list[dict[str, float]], save: bool = True
) -> tuple[dict, list[dict]]:
    """Beam search over ``grid`` (e.g. alpha/beta values) on every manifest; returns the best
    settings and every trial. The best is the lowest WER averaged over the sets with equal
    weight (then CER), so one large or easy corpus does not pick the LM weight for all. With
    ``save``, the best go to ``decoder.yaml`` beside the checkpoint, where ``stt eval`` and
    ``stt transcribe`` pick them up."""
    model, vocab = read_any_model(cfg.checkpoint, cfg.backend)
    device = pick_device(cfg.device)
    names = list(cfg.names) or [set_name(m) for m in cfg.manifests]
    test_sets = [
        load_test_set(m, n, model, vocab, device, cfg)
        for m, n in zip(cfg.manifests, names, strict=True)
    ]
    frame_seconds = model.frame_ms / 1000
    trials = []
    for params in grid:
        dcfg = DecoderConfig(**{**vars(cfg.decoder), "kind": "beam", **params})
        decoder = build_decoder(vocab, dcfg)
        per_set = {}
        try:
            for test_set in test_sets:
                results, _ = decode_timed(decoder, test_set.log_probs, frame_seconds)
                refs = [u.text for u in test_set.utterances]
                per_set[test_set.name] = error_counts(refs, [r.text for r in results])
        finally:
            decoder.close()
        wer = float(np.mean([c.wer for c in per_set.values()]))
        cer = float(np.mean([c.cer for c in per_set.values()]))
        trial = {**params, "wer": wer, "cer": cer}
        if len(per_set) > 1:
            trial.update({f"wer[{n}]": c.wer for n, c in per_set.items()})
        trials.append(trial)
        log.info("%s: mean WER %.2f%% over %d set(s)", params, 100 * wer, len(per_set))
    best = min(trials, key=lambda t: (t["wer"], t["cer"]))
    settings = {**vars(cfg.decoder), "kind": "beam", **{k: best[k] for k in grid[0]}}
    if save:
        path = save_tuned_decoder(cfg.checkpoint, settings)
        log.info("best decoder settings saved to %s", path)
    return settings, trials
