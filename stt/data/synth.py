"""`stt synth`: a synthetic multi-voice, multi-accent speech corpus.

The corpus is planned first, deterministically from the seed: every utterance's sentence, voice,
speaking rate, pitch and noise are fixed before any audio is made. Synthesis then runs in parallel
and each FLAC's name carries a hash of its plan entry, so a rerun (same settings) skips what is
already there, re-makes files that are unreadable, and never mixes audio from other settings.

Splits: ``train`` and ``dev`` use the same voices with disjoint sentences; ``test`` uses voices
never heard in training (held-out variants) and its own sentences. Accents listed in
``holdout_accents`` are kept out of all three and written to ``holdout_adapt`` (for fine-tuning)
and ``holdout_test`` (disjoint voices and sentences) instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from stt import text as text_module
from stt.audio import SAMPLE_RATE, resample, write_flac
from stt.data import sentences as sentences_module
from stt.data.manifest import Utterance, write_manifest
from stt.data.sentences import harvest, sources_fingerprint
from stt.data.voices import Voice, all_voices, render, require_engines
from stt.errors import ConfigError
from stt.text import Vocabulary

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
HOLDOUT_SPLITS = ("holdout_adapt", "holdout_test")


@dataclass
class SynthConfig:
    """Settings of ``stt synth`` (mirrors ``conf/synth.yaml``)."""

    out_dir: str = "synth"
    hours: float = 1.0  # train + dev + test audio, in hours
    seed: int = 1
    workers: int = 0  # 0 = one per CPU core
    engines: list[str] = field(default_factory=lambda: ["espeak", "flite"])
    accents: list[str] = field(default_factory=list)  # empty = every accent
    holdout_accents: list[str] = field(default_factory=list)
    holdout_adapt_hours: float = 0.15
    holdout_test_hours: float = 0.1
    test_variants: list[str] = field(default_factory=lambda: ["m7", "f5", "victor", "linda"])
    test_flite_voices: list[str] = field(default_factory=lambda: ["rms"])
    split_fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "dev": 0.1, "test": 0.1}
    )
    sentence_fractions: dict[str, float] = field(
        default_factory=lambda: {"dev": 0.05, "test": 0.05}
    )
    rate: list[float] = field(default_factory=lambda: [0.8, 1.3])  # speed factor range
    pitch: list[float] = field(default_factory=lambda: [0.25, 0.75])  # 0..1, 0.5 = natural
    noise_prob: float = 0.3
    snr_db: list[float] = field(default_factory=lambda: [10.0, 30.0])
    min_words: int = 5
    max_words: int = 20
    text_files: list[str] = field(default_factory=list)
    use_debian_text: bool = True
    progress: bool = True


@dataclass(frozen=True)
class PlannedUtterance:
    """Everything needed to make one utterance, fixed before synthesis."""

    id: str
    split: str
    text: str
    voice: Voice
    rate: float
    pitch: float
    snr_db: float | None
    noise_seed: int

    @property
    def filename(self) -> str:
        key = json.dumps(
            [self.text, self.voice.speaker, self.rate, self.pitch, self.snr_db, self.noise_seed]
        )
        return f"{self.id}_{hashlib.sha1(key.encode()).hexdigest()[:8]}.flac"


@dataclass
class SynthSummary:
    """What a run made: manifest per split, utterances synthesised now and skipped as done."""

    manifests: dict[str, Path]
    made: int
    skipped: int
    failed: int
    hours: dict[str, float]


def estimate_seconds(text: str, rate: float) -> float:
    """Rough spoken duration (both engines speak about 175 words per minute at rate 1)."""
    return (text.count(" ") + 1) * 60.0 / (175.0 * rate) + 0.5


def partition_voices(cfg: SynthConfig) -> dict[str, list[Voice]]:
    """Voices per split: seen (train/dev), unseen (test), and the held-out accents' two sets."""
    voices = all_voices(cfg.engines)
    known_accents = sorted({v.accent for v in voices})
    for accent in [*cfg.accents, *cfg.holdout_accents]:
        if accent not in known_accents:
            raise ConfigError(f"unknown accent {accent!r}; known: {', '.join(known_accents)}")
    if cfg.accents:
        voices = [v for v in voices if v.accent in cfg.accents or v.accent in cfg.holdout_accents]
    held_out = set(cfg.test_variants) | set(cfg.test_flite_voices)
    main = [v for v in voices if v.accent not in cfg.holdout_accents]
    holdout = [v for v in voices if v.accent in cfg.holdout_accents]
    groups = {
        "train": [v for v in main if v.variant not in held_out],
        "test": [v for v in main if v.variant in held_out],
        "holdout_adapt": [v for v in holdout if v.variant not in held_out],
        "holdout_test": [v for v in holdout if v.variant in held_out],
    }
    groups["dev"] = groups["train"]
    needed = list(SPLITS) + (list(HOLDOUT_SPLITS) if cfg.holdout_accents else [])
    for split in needed:
        if not groups[split]:
            raise ConfigError(f"no voices left for split {split!r}: check accents/test_variants")
    return groups


def split_sentences(sentences: list[str], cfg: SynthConfig) -> dict[str, list[str]]:
    """Shuffle with the seed and cut into disjoint train / dev / test sentence pools."""
    pool = sorted(sentences)
    random.Random(cfg.seed).shuffle(pool)
    n_dev = max(1, int(len(pool) * cfg.sentence_fractions.get("dev", 0.05)))
    n_test = max(1, int(len(pool) * cfg.sentence_fractions.get("test", 0.05)))
    if len(pool) < n_dev + n_test + 1:
        raise ConfigError(f"only {len(pool)} usable sentences: too few for three splits")
    return {
        "dev": pool[:n_dev],
        "test": pool[n_dev : n_dev + n_test],
        "train": pool[n_dev + n_test :],
    }


def make_plan(cfg: SynthConfig, sentences: list[str]) -> list[PlannedUtterance]:
    """The whole corpus, utterance by utterance, as a pure function of config and sentences."""
    if cfg.hours <= 0:
        raise ConfigError(f"hours must be > 0, got {cfg.hours}")
    voices = partition_voices(cfg)
    pools = split_sentences(sentences, cfg)
    budgets = {s: cfg.hours * 3600 * cfg.split_fractions.get(s, 0.0) for s in SPLITS}
    if cfg.holdout_accents:
        budgets["holdout_adapt"] = cfg.holdout_adapt_hours * 3600
        budgets["holdout_test"] = cfg.holdout_test_hours * 3600
    sentence_pool = {"holdout_adapt": "train", "holdout_test": "test"}
    plan: list[PlannedUtterance] = []
    for split_index, (split, budget) in enumerate(budgets.items()):
        rng = random.Random(cfg.seed * 1000 + split_index)
        texts = list(pools[sentence_pool.get(split, split)])
        rng.shuffle(texts)
        total, i = 0.0, 0
        while total < budget:
            text = texts[i % len(texts)]
            rate = round(rng.uniform(*cfg.rate), 3)
            noisy = rng.random() < cfg.noise_prob
            utt = PlannedUtterance(
                id=f"{split}-{i:06d}",
                split=split,
                text=text,
                voice=rng.choice(voices[split]),
                rate=rate,
                pitch=round(rng.uniform(*cfg.pitch), 3),
                snr_db=round(rng.uniform(*cfg.snr_db), 1) if noisy else None,
                noise_seed=rng.randrange(2**31),
            )
            plan.append(utt)
            total += estimate_seconds(text, rate)
            i += 1
    return plan


def add_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix white and brown (integrated) noise at ``snr_db`` relative to the speech power."""
    n = len(waveform)
    white = rng.standard_normal(n)
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(401) / 401, mode="same")  # drop the drift
    brown /= np.std(brown) + 1e-9
    mix = rng.uniform(0.0, 1.0)
    noise = mix * white + (1 - mix) * brown
    noise /= np.std(noise) + 1e-9
    speech_power = np.mean(waveform**2) + 1e-12
    scale = np.sqrt(speech_power / 10 ** (snr_db / 10))
    return (waveform + scale * noise).astype(np.float32)


def render_utterance(utt: PlannedUtterance) -> np.ndarray:
    """Synthesize, resample to 16 kHz, pad with a little silence, add noise, set the level."""
    audio, rate = render(utt.voice, utt.text, utt.rate, utt.pitch)
    audio = resample(audio, rate, SAMPLE_RATE)
    rng = np.random.default_rng(utt.noise_seed)
    pad = rng.integers(int(0.05 * SAMPLE_RATE), int(0.3 * SAMPLE_RATE), size=2)
    audio = np.concatenate([np.zeros(pad[0], np.float32), audio, np.zeros(pad[1], np.float32)])
    if utt.snr_db is not None:
        audio = add_noise(audio, utt.snr_db, rng)
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio * (rng.uniform(0.3, 0.95) / peak)).astype(np.float32)


def existing_duration(path: Path) -> float | None:
    """Duration of a finished FLAC, or None if it is missing or damaged (then it is re-made)."""
    if not path.exists():
        return None
    try:
        data, rate = sf.read(str(path), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, ValueError):
        log.warning("%s: damaged, synthesizing it again", path)
        return None
    return len(data) / rate if len(data) else None


def cache_dir() -> Path:
    """Where derived data is cached: ``$STT_CACHE_DIR``, else ``$XDG_CACHE_HOME/stt``."""
    if os.environ.get("STT_CACHE_DIR"):
        return Path(os.environ["STT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stt"


def load_sentences(cfg: SynthConfig, vocab: Vocabulary) -> list[str]:
    """Harvest the sentences once per set of sources and normaliser version, then cache them.

    The key covers the source files (names, sizes, mtimes), the word limits, the vocabulary and
    the code that cleans the text, so a stale cache is never used.
    """
    code = "".join(Path(module.__file__).read_text() for module in (text_module, sentences_module))
    key = json.dumps(
        [
            sources_fingerprint(cfg.text_files, cfg.use_debian_text),
            cfg.min_words,
            cfg.max_words,
            vocab.tokens,
            hashlib.sha1(code.encode()).hexdigest(),
        ]
    )
    cache = cache_dir() / f"sentences-{hashlib.sha1(key.encode()).hexdigest()[:16]}.txt"
    if cache.exists():
        return cache.read_text(encoding="utf-8").splitlines()
    sentences = harvest(vocab, cfg.min_words, cfg.max_words, cfg.text_files, cfg.use_debian_text)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.partial")
    tmp.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    tmp.replace(cache)
    return sentences


def synthesize_corpus(cfg: SynthConfig) -> SynthSummary:
    """Make (or complete) the corpus described by ``cfg``; returns what was written."""
    require_engines(cfg.engines)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = Vocabulary.default()
    sentences = load_sentences(cfg, vocab)
    plan = make_plan(cfg, sentences)
    for split in {u.split for u in plan}:
        split_dir = out_dir / "audio" / split
        split_dir.mkdir(parents=True, exist_ok=True)
        for partial in split_dir.glob(".*.partial"):  # left by a run that was killed
            partial.unlink()

    workers = cfg.workers or os.cpu_count() or 1
    paths = [out_dir / "audio" / u.split / u.filename for u in plan]
    with ThreadPoolExecutor(workers) as pool:
        durations = list(pool.map(existing_duration, paths))
    todo = [i for i, d in enumerate(durations) if d is None]
    failed = 0

    def make(i: int) -> tuple[int, float | None]:
        try:
            audio = render_utterance(plan[i])
        except RuntimeError as exc:  # one bad utterance must not sink the corpus
            log.warning("%s: %s", plan[i].id, exc)
            return i, None
        write_flac(paths[i], audio)
        return i, len(audio) / SAMPLE_RATE

    # Threads, not processes: the work happens in the engines' subprocesses, libsndfile and
    # torch's resampler, all of which run outside the GIL.
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(todo), desc="synth", unit="utt", disable=not cfg.progress or not todo
        ) as bar,
    ):
        for i, seconds in pool.map(make, todo):
            durations[i] = seconds
            failed += seconds is None
            bar.update(1)

    manifests: dict[str, Path] = {}
    hours: dict[str, float] = {}
    for split in dict.fromkeys(u.split for u in plan):
        rows = [
            Utterance(paths[i], durations[i], u.text, synth_metadata(u))
            for i, u in enumerate(plan)
            if u.split == split and durations[i] is not None
        ]
        manifests[split] = write_manifest(out_dir / f"{split}.jsonl", rows)
        hours[split] = sum(r.duration for r in rows) / 3600
    (out_dir / "synth_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return SynthSummary(manifests, len(todo) - failed, len(plan) - len(todo), failed, hours)


def synth_metadata(utt: PlannedUtterance) -> dict:
    """The manifest's extra keys for one utterance."""
    return {
        "speaker": utt.voice.speaker,
        "accent": utt.voice.accent,
        "engine": utt.voice.engine,
        "rate": utt.rate,
        "pitch": utt.pitch,
        "snr_db": utt.snr_db,
    }


def describe(summary: SynthSummary) -> str:
    """A short human summary of a run, one line per split."""
    lines = []
    for split, path in summary.manifests.items():
        lines.append(f"{split:>14}: {summary.hours[split] * 60:7.2f} min -> {path}")
    counts = Counter(made=summary.made, skipped=summary.skipped, failed=summary.failed)
    lines.append(", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)
