"""Pack the recipe's corpora for a GPU machine that takes at most ~64 MiB per call.

The train splits of all six corpora (LibriSpeech, speechocean762, LJSpeech, AN4, FSDD,
synthetic) and a seeded sample of each dev split are re-encoded as Ogg/Opus at ~15 kbit/s
(libsndfile's compression level 0.965; measured on 60 LibriSpeech dev utterances, the shipped
model's greedy CER is 0.8 points worse on such copies than on near-lossless ones, 2.1 at
~10 kbit/s) and split into parts of at most ``--part-mb`` MiB, one device call each:

    OUT/part-1/, OUT/part-2/, ...   audio (``CORPUS/SPLIT/NNNNN.ogg``)
    OUT/work/                       manifests, laid out as scripts/train_default_model.sh reads
                                    its WORK folder (``decoded/CORPUS/train.jsonl`` for the Opus
                                    corpora, ``CORPUS/train.jsonl`` for the others,
                                    ``CORPUS/dev.jsonl``), audio paths relative to each manifest
    OUT/parts.json                  the parts, their sizes, and what each call carries

On the GPU machine, ``scripts/gpu/train_on_gpu.sh`` runs ``pack_data.py --ready OUT``: the
manifests with only the utterances whose audio arrived, with absolute paths, in ``OUT/ready``.

Usage: python scripts/gpu/pack_data.py [WORK=data_cache] [OUT=.gpu] [--part-mb 30]
       [--dev-limit 150] [--level 0.965];  python scripts/gpu/pack_data.py --ready OUT
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from stt.audio import SAMPLE_RATE, load_audio
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import exit_status

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The Opus corpora are read by the recipe's train stage from decoded/ (FLAC copies on the CPU
# machine; here the packed Opus, which data.on_device decodes once anyway).
from recipe_corpora import CORPORA, train_manifest  # noqa: E402

SAMPLE_EVERY = 40  # every 40th utterance is encoded first, to measure the bitrate


def splits(work: Path, dev_limit: int) -> list[tuple[str, str, list[Utterance]]]:
    """(corpus, split, utterances) for every train split and a seeded sample of every dev
    split under ``work``.

    Raises:
        ManifestError: a manifest is missing or unreadable.
    """
    out = []
    for corpus in CORPORA:
        out.append((corpus, "train", read_manifest(train_manifest(work, corpus))))
        dev = read_manifest(work / corpus / "dev.jsonl")
        random.Random(1).shuffle(dev)
        out.append((corpus, "dev", dev[:dev_limit]))
    return out


def encode(job: tuple[Path, Path, float]) -> int:
    """Encode one file (unless done already): its size in bytes."""
    src, dst, level = job
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        sf.write(tmp, load_audio(src), SAMPLE_RATE, format="OGG", subtype="OPUS",
                 compression_level=level)  # fmt: skip
        tmp.replace(dst)
    return dst.stat().st_size


def bytes_per_second(items: list[tuple[str, str, list[Utterance]]], level: float,
                     scratch: Path) -> float:  # fmt: skip
    """The encoder's rate on a sample of the utterances (VBR: speech varies a little)."""
    sample = [u for _, _, utts in items for u in utts][::SAMPLE_EVERY]
    jobs = [(u.audio_filepath, scratch / f"{i:05d}.ogg", level) for i, u in enumerate(sample)]
    with ThreadPoolExecutor() as pool:
        size = sum(pool.map(encode, jobs))
    for _, dst, _ in jobs:
        dst.unlink()
    return size / max(sum(u.duration for u in sample), 1e-9)


def pack(work: Path, out: Path, part_mb: float, dev_limit: int, level: float) -> dict:
    """Encode and split; returns what ``parts.json`` says."""
    items = splits(work, dev_limit)
    rate = bytes_per_second(items, level, out / "scratch")
    budget = part_mb * 2**20 / 1.08  # 8% margin on the estimate
    part, used, jobs, manifests = 1, 0.0, [], {}
    for corpus, split, utterances in items:
        manifest = train_manifest(out / "work", corpus) if split == "train" else (
            out / "work" / corpus / "dev.jsonl")  # fmt: skip
        rows = []
        for i, u in enumerate(utterances):
            size = u.duration * rate
            if used + size > budget and used > 0:
                part, used = part + 1, 0.0
            used += size
            dst = out / f"part-{part}" / corpus / split / f"{i:05d}.ogg"
            jobs.append((u.audio_filepath, dst, level))
            rows.append(Utterance(dst, u.duration, u.text, u.extra))
        manifests[manifest] = rows
    with ThreadPoolExecutor() as pool:
        list(pool.map(encode, jobs))
    for manifest, rows in manifests.items():
        write_relative(manifest, rows)
    (out / "scratch").rmdir()
    parts = sorted(out.glob("part-*"), key=lambda p: int(p.name.split("-")[1]))
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*.ogg")) for p in parts}
    info = {
        "level": level,
        "kbit_per_second": round(rate * 8 / 1000, 1),
        "hours": round(sum(u.duration for rows in manifests.values() for u in rows) / 3600, 2),
        "part_mib": {name: round(size / 2**20, 1) for name, size in sizes.items()},
        "calls": [[f"{out.name}/{name}"] for name in sizes]
        + [[f"{out.name}/work", f"{out.name}/whl", f"{out.name}/init"]],
    }
    (out / "parts.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def write_relative(manifest: Path, rows: list[Utterance]) -> None:
    """A manifest whose audio paths are relative to its folder, ``..`` included, so the packed
    folder reads the same wherever the device machine puts the repository."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        Utterance(
            Path(os.path.relpath(u.audio_filepath, manifest.parent)), u.duration, u.text, u.extra
        ).to_json()  # fmt: skip
        for u in rows
    ]
    manifest.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def ready(out: Path) -> int:
    """On the GPU machine: ``out/ready``, the packed manifests with only the utterances whose
    audio is here (absolute paths); says what is missing. Returns the utterances kept."""
    kept = 0
    for manifest in sorted((out / "work").rglob("*.jsonl")):
        rows = read_manifest(manifest)
        here = [u for u in rows if u.audio_filepath.exists()]
        if len(here) < len(rows):
            print(f"pack_data: {manifest}: {len(rows) - len(here)} of {len(rows)} utterances "
                  "missing (a part not sent?)", file=sys.stderr)  # fmt: skip
        target = out / "ready" / manifest.relative_to(out / "work")
        write_manifest(target, here)  # absolute paths: the audio lies outside ready/
        kept += len(here)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", nargs="?", type=Path, default=Path("data_cache"))
    parser.add_argument("out", nargs="?", type=Path, default=Path(".gpu"))
    parser.add_argument("--part-mb", type=float, default=30.0,
                        help="MiB of audio per part (one device call each)")  # fmt: skip
    parser.add_argument("--dev-limit", type=int, default=150, help="utterances per dev split")
    parser.add_argument("--level", type=float, default=0.965, help="libsndfile Opus level")
    parser.add_argument("--ready", type=Path, metavar="OUT",
                        help="on the GPU machine: write OUT/ready from what arrived")  # fmt: skip
    args = parser.parse_args(argv)

    def work() -> None:
        if args.ready:
            print(f"pack_data: {ready(args.ready)} utterances ready in {args.ready / 'ready'}")
        else:
            print(json.dumps(pack(args.work, args.out, args.part_mb, args.dev_limit, args.level)))

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
