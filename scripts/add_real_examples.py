"""Add real open-vocabulary recordings from the *dev* splits to examples/ (issue 12).

Usage: python scripts/add_real_examples.py [WORK_DIR=data_cache]

The pick is a fixed, seeded rule, not a choice by how well the model does: per corpus, dev
utterances of 4-9 s (speechocean762: whole sentences of 5+ words), shuffled with seed 1, one per
speaker until the quota is met. Their speakers were held out of training (LJSpeech: its one
reader, but a book held out of training). Copies are 16-bit FLAC. Rerunning rewrites the same
files and manifest rows.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stt.audio import load_audio, write_flac  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PICKS = [  # (corpus, how many, file prefix, source line)
    ("librispeech", 2, "libri", "LibriSpeech train-clean-5 (CC BY 4.0), a dev-split reader"),
    ("speechocean", 1, "speechocean", "speechocean762 (free licence, see examples/LICENSES.md)"),
    ("ljspeech", 1, "ljspeech", "LJSpeech 1.1 (public domain), held-out book LJ050"),
]


def eligible(corpus: str, utt) -> bool:
    if corpus == "speechocean":
        return len(utt.text.split()) >= 5
    return 4.0 <= utt.duration <= 9.0


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "data_cache")
    manifest = EXAMPLES / "references.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r["audio_filepath"].split("_", 1)[1].startswith(
        tuple(prefix + "_" for _, _, prefix, _ in PICKS))]  # fmt: skip
    number = len(rows)
    for corpus, quota, prefix, source in PICKS:
        utts = [u for u in read_manifest(work / corpus / "dev.jsonl") if eligible(corpus, u)]
        random.Random(1).shuffle(utts)
        speakers: set[str] = set()
        for utt in utts:
            if len(speakers) == quota:
                break
            if utt.speaker in speakers:
                continue
            speakers.add(utt.speaker)
            number += 1
            name = f"{number:02d}_{prefix}_{utt.audio_filepath.stem}.flac"
            write_flac(EXAMPLES / name, load_audio(utt.audio_filepath))
            rows.append({"audio_filepath": name, "duration": utt.duration, "text": utt.text,
                         "speaker": utt.speaker, "source": source})  # fmt: skip
            print(f"examples/{name}: {utt.text}")
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
