"""`stt eval`: WER/CER reports for a checkpoint on named test sets, greedy and beam side by side.

The model runs once per set; every requested decoder then decodes the same log-probabilities, so
their figures compare like with like. Metrics come from jiwer; reports are written by
:mod:`stt.report`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np
from omegaconf import OmegaConf

from stt.data.manifest import Utterance, iter_manifest_lines
from stt.decoding import DecoderConfig, DecodeResult, build_decoder
from stt.errors import AudioError, ConfigError, ManifestError
from stt.inference import InferenceTiming, infer_log_probs, load_many, pick_device
from stt.metrics import ErrorCounts, error_counts
from stt.training.checkpoint import load_model

log = logging.getLogger(__name__)

TUNED_DECODER_FILE = "decoder.yaml"


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
    device: str = "auto"
    strict: bool = False  # stop at the first bad manifest line or unreadable file
    progress: bool = True


@dataclass
class TestSet:
    """One manifest's usable utterances with their log-probs, and what could not be used."""

    name: str
    path: str
    utterances: list[Utterance]
    log_probs: list[np.ndarray]
    bad_lines: list[str]
    bad_audio: list[str]
    compute_seconds: float

    @property
    def seconds(self) -> float:
        return sum(u.duration for u in self.utterances)


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


def alignment(reference: str, hypothesis: str) -> list[tuple[str, list[str], list[str]]]:
    """jiwer's word alignment as ``(kind, reference words, hypothesis words)`` chunks, kind one
    of equal, substitute, delete, insert. An empty reference is all insertion."""
    if not reference.strip():
        return [("insert", [], hypothesis.split())] if hypothesis.split() else []
    out = jiwer.process_words(reference, hypothesis)
    ref, hyp = out.references[0], out.hypotheses[0]
    return [
        (
            chunk.type,
            ref[chunk.ref_start_idx : chunk.ref_end_idx],
            hyp[chunk.hyp_start_idx : chunk.hyp_end_idx],
        )
        for chunk in out.alignments[0]
    ]


def aligned_diff(reference: str, hypothesis: str) -> str:
    """Reference and hypothesis interleaved: ``the [cat->cap] sat [-on] the mat [+now]``."""
    parts: list[str] = []
    for kind, r, h in alignment(reference, hypothesis):
        if kind == "equal":
            parts += r
        elif kind == "substitute":
            parts += [f"[{a}->{b}]" for a, b in zip(r, h, strict=True)]
        elif kind == "delete":
            parts += [f"[-{a}]" for a in r]
        else:
            parts += [f"[+{b}]" for b in h]
    return " ".join(parts)


def word_confusions(pairs: list[tuple[str, str]], top: int = 20) -> list[dict]:
    """The most frequent word errors: substitutions ``a->b``, deletions ``a->`` and insertions."""
    counter: Counter = Counter()
    for ref, hyp in pairs:
        for kind, r, h in alignment(ref, hyp):
            if kind == "substitute":
                counter.update(zip(r, h, strict=True))
            elif kind == "delete":
                counter.update((w, None) for w in r)
            elif kind == "insert":
                counter.update((None, w) for w in h)
    return [
        {"reference": ref, "hypothesis": hyp, "count": n}
        for (ref, hyp), n in counter.most_common(top)
    ]


def load_test_set(path: str, name: str, model, device, cfg: EvalConfig) -> TestSet:
    """Read a manifest (bad lines counted), load its audio (failures counted), run the model."""
    utterances, bad_lines = [], []
    for _, item in iter_manifest_lines(path):
        if isinstance(item, ManifestError):
            if cfg.strict:
                raise item
            bad_lines.append(str(item))
        else:
            utterances.append(item)
    waveforms, kept, bad_audio = [], [], []
    for utt, audio in zip(
        utterances, load_many([u.audio_filepath for u in utterances]), strict=True
    ):
        if isinstance(audio, AudioError):
            if cfg.strict:
                raise audio
            bad_audio.append(str(audio))
        else:
            waveforms.append(audio)
            kept.append(utt)
    for problem in bad_lines + bad_audio:
        log.warning("%s", problem)
    timing = InferenceTiming()
    log_probs = infer_log_probs(
        model, waveforms, device, cfg.max_batch_seconds, cfg.progress, f"model {name}", timing
    )
    return TestSet(name, path, kept, log_probs, bad_lines, bad_audio, timing.compute_seconds)


def score_set(test_set: TestSet, results: list[DecodeResult], decode_seconds: float) -> SetScore:
    """Score one decoder's results on one set, utterance by utterance and in total."""
    refs = [u.text for u in test_set.utterances]
    hyps = [r.text for r in results]
    rows = []
    for utt, ref, hyp in zip(test_set.utterances, refs, hyps, strict=True):
        one = error_counts([ref], [hyp])
        rows.append(
            {
                "audio_filepath": str(utt.audio_filepath),
                "duration": utt.duration,
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
    from stt.report import write_reports

    if not cfg.manifests:
        raise ConfigError("no test sets: give one or more manifests")
    if cfg.names and len(cfg.names) != len(cfg.manifests):
        raise ConfigError("names must have one entry per manifest")
    names = list(cfg.names) or [set_name(m) for m in cfg.manifests]
    if len(set(names)) != len(names):
        raise ConfigError(f"two test sets share a name ({names}); give names=[...]")
    model, vocab = load_model(cfg.checkpoint)
    device = pick_device(cfg.device)
    frame_seconds = model.frame_ms / 1000
    sets = [
        load_test_set(m, n, model, device, cfg) for m, n in zip(cfg.manifests, names, strict=True)
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


def tuned_decoder_path(checkpoint: str | Path) -> Path:
    """Where tuned decoder settings live: ``decoder.yaml`` beside the checkpoint."""
    return Path(checkpoint).parent / TUNED_DECODER_FILE


def load_tuned_decoder(checkpoint: str | Path) -> dict:
    """The tuned decoder settings saved beside a checkpoint ({} if none). Relative LM paths in
    the file are relative to its folder."""
    path = tuned_decoder_path(checkpoint)
    if not path.is_file():
        return {}
    values = OmegaConf.to_container(OmegaConf.load(path))
    for key in ("lm", "unigrams"):
        if values.get(key) and not Path(values[key]).is_absolute():
            values[key] = str(path.parent / values[key])
    return values


def tune_decoder(
    cfg: EvalConfig, grid: list[dict[str, float]], save: bool = True
) -> tuple[dict, list[dict]]:
    """Beam search over ``grid`` (e.g. alpha/beta values) on every manifest; returns the best
    settings and every trial. The best is the lowest WER averaged over the sets with equal
    weight (then CER), so one large or easy corpus does not pick the LM weight for all. With
    ``save``, the best go to ``decoder.yaml`` beside the checkpoint, where ``stt eval`` and
    ``stt transcribe`` pick them up."""
    model, vocab = load_model(cfg.checkpoint)
    device = pick_device(cfg.device)
    names = list(cfg.names) or [set_name(m) for m in cfg.manifests]
    test_sets = [
        load_test_set(m, n, model, device, cfg) for m, n in zip(cfg.manifests, names, strict=True)
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
        path = tuned_decoder_path(cfg.checkpoint)
        stored = dict(settings)
        for key in ("lm", "unigrams"):  # relative to the file, so the folder can move
            if stored.get(key):
                try:
                    stored[key] = str(
                        Path(stored[key]).resolve().relative_to(path.parent.resolve())
                    )
                except ValueError:
                    stored[key] = str(Path(stored[key]).resolve())
        OmegaConf.save(OmegaConf.create(stored), path)
        log.info("best decoder settings saved to %s", path)
    return settings, trials
