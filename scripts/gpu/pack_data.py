"""Pack the training corpus for a GPU machine that sits behind a small transfer limit.

The synthetic corpus (FLAC) and the real recordings are re-encoded as Ogg/Opus (~20-24 kbit/s,
about a fifth of FLAC) into ``OUT/{synth,an4,fsdd,accent}`` with rewritten manifests, so
``scripts/gpu/train_on_gpu.sh`` finds them at the same relative paths. ``accent/`` holds the
accent-holdout recipe of ``scripts/bench_accent.py``: the synthetic train/dev lines whose accent
is not Scottish. Usage: python scripts/gpu/pack_data.py [WORK=data_cache] [OUT=.gpu/dc]
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from stt.audio import SAMPLE_RATE, load_audio

HOLDOUT_ACCENT = "scottish"
SYNTH_LEVEL, REAL_LEVEL = 0.95, 0.93  # libsndfile's Opus compression levels: ~20 / ~24 kbit/s


def pack_manifest(src_dir: Path, dst_dir: Path, split: str, level: float, jobs: list) -> list[dict]:
    lines = []
    for i, line in enumerate(open(src_dir / f"{split}.jsonl")):
        entry = json.loads(line)
        audio = Path(entry["audio_filepath"])
        rel = f"audio/{split}/{i:05d}.ogg"
        jobs.append((audio if audio.is_absolute() else src_dir / audio, dst_dir / rel, level))
        lines.append({**entry, "audio_filepath": rel})
    write_manifest(dst_dir / f"{split}.jsonl", lines)
    return lines


def write_manifest(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(entry) + "\n" for entry in lines))


def encode(job: tuple[Path, Path, float]) -> None:
    src, dst, level = job
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        audio = load_audio(src)
        sf.write(dst, audio, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=level)


def main(work: Path, out: Path) -> None:
    jobs: list = []
    for name in ("an4", "fsdd"):
        for split in ("train", "dev"):
            pack_manifest(work / name, out / name, split, REAL_LEVEL, jobs)
    for split, accent_name in (("train", "base_train"), ("dev", "orig_dev")):
        lines = pack_manifest(work / "synth", out / "synth", split, SYNTH_LEVEL, jobs)
        kept = [
            {**e, "audio_filepath": "../synth/" + e["audio_filepath"]}
            for e in lines
            if e.get("accent") != HOLDOUT_ACCENT
        ]
        write_manifest(out / "accent" / f"{accent_name}.jsonl", kept)
    with ThreadPoolExecutor() as pool:
        list(pool.map(encode, jobs))
    print(f"{len(jobs)} files in {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0] if args else "data_cache"), Path(args[1] if len(args) > 1 else ".gpu/dc"))
