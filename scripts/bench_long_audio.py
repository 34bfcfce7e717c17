#!/usr/bin/env python
"""Long-audio transcription: wall time, RTFx and peak memory on a synthetic one-hour file.

Makes a 16 kHz FLAC of espeak-ng utterances (several accents) separated by random pauses,
written block by block so this script stays small in memory, then transcribes it with
``stt.transcribe`` (windowed reading, stitched log-probs, streaming greedy decoding) and
records the wall time, RTFx (audio seconds per wall second) and the process's peak RSS. Target:
a one-hour file under 2 GB of RSS, whatever the length.

    .venv/bin/python scripts/bench_long_audio.py [--checkpoint CKPT] [--hours 1]

Without --checkpoint the model is a randomly initialised one of ``conf/model/small.yaml``'s
architecture (same compute as the trained small model; its text is junk). Writes
``bench/results/long_audio.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from machine import write_results  # noqa: E402

from stt.audio import SAMPLE_RATE, load_audio  # noqa: E402
from stt.transcribe import Transcriber, load_model  # noqa: E402

TARGET_RSS_MB = 2048
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a stitch in time saves nine",
    "she sells sea shells by the sea shore",
    "every cloud has a silver lining",
    "the early bird catches the worm but the second mouse gets the cheese",
    "speech recognition turns spoken words into written text",
    "please call stella and ask her to bring these things with her from the store",
    "six spoons of fresh snow peas and five thick slabs of blue cheese",
    "we also need a small plastic snake and a big toy frog for the kids",
    "the rainbow is a division of white light into many beautiful colors",
    "when the sunlight strikes raindrops in the air they act as a prism",
    "there is according to legend a boiling pot of gold at one end",
]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3"]


def command_args() -> list[str]:
    """This run's arguments, less the --note text (stored on its own)."""
    args = list(sys.argv[1:])
    if "--note" in args:
        i = args.index("--note")
        del args[i : i + 2]
    return args


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def utterances(tmp: Path) -> list[np.ndarray]:
    """Every sentence in every voice, 16 kHz (a few minutes of audio in all)."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is missing: run scripts/setup.sh")
    out = []
    for i, sentence in enumerate(SENTENCES):
        for j, voice in enumerate(VOICES):
            wav = tmp / f"{i}_{j}.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(140 + 10 * j), "-w", str(wav), sentence],
                check=True,
                capture_output=True,
            )
            out.append(load_audio(wav))
    return out


def write_long_flac(path: Path, hours: float, pieces: list[np.ndarray], seed: int = 1) -> float:
    """Utterances and 0.2-1.5 s pauses, drawn at random, written one at a time."""
    rng = np.random.default_rng(seed)
    total = int(hours * 3600 * SAMPLE_RATE)
    written = 0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, format="FLAC", subtype="PCM_16") as out:
        while written < total:
            piece = pieces[int(rng.integers(len(pieces)))]
            pause = np.zeros(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE), np.float32)
            block = np.concatenate([piece, pause])[: total - written]
            out.write(block)
            written += len(block)
    return written / SAMPLE_RATE


def random_small_model(window_seconds: float) -> Transcriber:
    from stt.config import compose
    from stt.model import WaveNetCTC, model_config_from_dict
    from stt.text import Vocabulary

    torch.manual_seed(0)
    cfg = compose("train", ["model=small"]).model
    vocab = Vocabulary.default()
    model = WaveNetCTC(model_config_from_dict(cfg), len(vocab)).eval()
    return Transcriber(model, vocab, window_seconds=window_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: a random-init small model")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--window-seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--audio", type=Path, help="reuse (or keep) the long FLAC here")
    parser.add_argument("--note", help="a remark stored with the results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        audio = args.audio or Path(tmp) / "long.flac"
        start = time.perf_counter()
        if audio.exists() and abs(sf.info(audio).duration - args.hours * 3600) < 1:
            audio_seconds = sf.info(audio).duration
        else:
            audio_seconds = write_long_flac(audio, args.hours, utterances(Path(tmp)))
        make_seconds = time.perf_counter() - start
        print(f"{audio}: {audio_seconds / 3600:.2f} h made in {make_seconds:.0f} s")

        if args.checkpoint:
            transcriber = load_model(args.checkpoint, window_seconds=args.window_seconds)
            model_used = f"checkpoint {args.checkpoint}"
        else:
            transcriber = random_small_model(args.window_seconds)
            model_used = "random-init conf/model/small.yaml (untrained: the text is junk)"
        rss_before = peak_rss_mb()
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        with transcriber:
            result = transcriber.transcribe(audio, progress=True)
        wall = time.perf_counter() - start
        rss_peak = peak_rss_mb()

    rtfx = audio_seconds / wall
    print(
        f"{wall:.1f} s wall, RTFx {rtfx:.0f}, peak RSS {rss_peak:.0f} MB "
        f"({rss_before:.0f} MB before transcribing), {len(result.words)} words"
    )
    path = write_results(
        "long_audio",
        {
            "benchmark": "long_audio",
            "command": "python scripts/bench_long_audio.py " + shlex.join(command_args()),
            "model": model_used,
            "model_description": transcriber.model.describe(),
            "decoder": transcriber.decoder_config.kind,
            "device": str(transcriber.device),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": round(load_before, 2),
            "audio": "16 kHz FLAC: espeak-ng utterances (6 voices) + 0.2-1.5 s pauses",
            "audio_seconds": round(audio_seconds, 1),
            "window_seconds": transcriber.window_seconds,
            "wall_seconds": round(wall, 1),
            "rtfx": round(rtfx, 1),
            "peak_rss_mb": round(rss_peak),
            "rss_before_transcribing_mb": round(rss_before),
            "target_peak_rss_mb": TARGET_RSS_MB,
            "words": len(result.words),
            "segments": len(result.segments),
            **({"note": args.note} if args.note else {}),
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
