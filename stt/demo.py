"""`stt demo`: the README's first command, end to end on the embedded default.

With a model (the shipped default, or ``--model``) it transcribes the example recordings in
``examples/`` and prints each transcript beside its reference, then the WER. Until a trained
model ships, it shows the data pipeline instead: it synthesizes a few utterances in several
accents and prints their manifest, their MFCC features and the validation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stt.audio import load_audio
from stt.data.manifest import read_manifest
from stt.data.synth import SynthConfig, describe, synthesize_corpus
from stt.data.validate import validate_manifest
from stt.features import MFCC
from stt.metrics import error_counts

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "references.jsonl"

SHADES = " .:-=+*#%@"


def ascii_features(feats: torch.Tensor, width: int = 72, rows: int = 10) -> str:
    """A coarse text picture of ``(n_mfcc, frames)`` features: time left to right."""
    n, frames = feats.shape
    pooled = torch.nn.functional.adaptive_avg_pool2d(feats[None, None], (rows, min(width, frames)))
    grid = pooled[0, 0]
    lo, hi = float(grid.min()), float(grid.max())
    scale = (len(SHADES) - 1) / (hi - lo + 1e-9)
    return "\n".join(
        "    |" + "".join(SHADES[int((v - lo) * scale)] for v in row.tolist()) + "|"
        for row in grid.flip(0)
    )


def run_demo(cfg: SynthConfig) -> int:
    """Synthesize the corpus ``cfg`` describes (the CLI makes it a small one), then print manifest
    rows, feature shapes and statistics, and validation."""
    print(f"== Synthesizing {cfg.hours * 60:.1f} min of speech into {cfg.out_dir}/")
    summary = synthesize_corpus(cfg)
    print(describe(summary))

    mfcc = MFCC()
    c = mfcc.config
    print(
        f"\n== Features: {c.n_mfcc} MFCCs from {c.n_mels} mel bands, {c.window_ms:g} ms windows "
        f"every {c.hop_ms:g} ms, normalised per utterance; shape (batch, n_mfcc, frames)"
    )
    utterances = (
        read_manifest(summary.manifests["test"])[:3] + read_manifest(summary.manifests["train"])[:3]
    )
    for utt in utterances:
        waveform = torch.from_numpy(load_audio(utt.audio_filepath))
        feats, _ = mfcc(waveform)
        print(
            f'\n  [{utt.accent} / {utt.speaker}] {utt.duration:.2f} s  "{utt.text}"\n'
            f"    features {tuple(feats.shape)}  mean {feats.mean():+.3f}  std {feats.std():.3f}"
        )
    print("\n  MFCC picture of the last one (low coefficients at the bottom):")
    print(ascii_features(feats[0]))

    print("\n== Manifest lines (NeMo JSONL):")
    print(Path(summary.manifests["train"]).read_text().splitlines()[0])
    print("\n== Validation:")
    ok = True
    for path in summary.manifests.values():
        report = validate_manifest(path, progress=False)
        print(report.format())
        ok &= report.ok
    return 0 if ok else 1


def run_transcription_demo(checkpoint: Path | None, manifest: Path = EXAMPLES) -> int:
    """Transcribe the examples with ``checkpoint`` (None: the shipped model); print the WER."""
    from stt.transcribe import load_model

    utterances = read_manifest(manifest)
    print(f"== Transcribing {len(utterances)} example recordings ({manifest})")
    refs, hyps = [], []
    with load_model(checkpoint) as transcriber:
        paths = [u.audio_filepath for u in utterances]
        for utt, (_, result) in zip(
            utterances, transcriber.transcribe_many(paths, progress=False), strict=True
        ):
            hyp = getattr(result, "text", f"<error: {result}>")
            refs.append(utt.text)
            hyps.append(hyp)
            print(f"\n  {utt.audio_filepath.name}  ({utt.duration:.1f} s, {utt.speaker})")
            print(f"    reference:  {utt.text}")
            print(f"    transcript: {hyp}")
    counts = error_counts(refs, hyps)
    print(f"\n== WER {100 * counts.wer:.1f}%   CER {100 * counts.cer:.1f}%  over the examples")
    return 0
