"""Assemble the language-model text of the shipped default, without the dev sets' sentences.

Usage: python scripts/lm_corpus.py WORK_DIR [SHARED_DATA]  ->  WORK_DIR/lm_text/*.txt

- ``external.txt``: ``lm_text/*.txt.xz`` (Gutenberg sample, State of the Union, Common Voice,
  LJSpeech transcripts), minus every sentence that shares a word 6-gram with, or equals, a
  transcript of the open-vocabulary dev splits (LibriSpeech, LJSpeech) or the synthetic dev/test
  sets. lm_text/ was filtered against the project's hidden test recordings, not against our own
  dev splits: the LJSpeech transcripts hold all of LJ050 (our LJSpeech dev book), and Gutenberg
  may hold a dev reader's book. Scored on a dev split, an LM that has read it flatters itself.
- ``transcripts.txt``: the train-split transcripts of every corpus. speechocean762's prompts
  repeat across speakers, so its dev prompts occur here: its beam+LM dev WER is optimistic, as
  its dev split is speaker- but not text-disjoint.
"""

from __future__ import annotations

import lzma
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stt.data.manifest import read_manifest  # noqa: E402

NGRAM = 6
OPEN_DEV = ("librispeech/dev", "ljspeech/dev", "synth/dev", "synth/test")
TRAIN = ("librispeech", "speechocean", "ljspeech", "an4", "fsdd", "synth")


def texts(manifest: Path) -> list[str]:
    return [u.text for u in read_manifest(manifest)]


def ngrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def main() -> int:
    work = Path(sys.argv[1])
    shared = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data")
    out = work / "lm_text"
    out.mkdir(parents=True, exist_ok=True)

    held_out: set[str] = set()
    held_grams: set[tuple[str, ...]] = set()
    for name in OPEN_DEV:
        for text in texts(work / f"{name}.jsonl"):
            held_out.add(text)
            held_grams |= ngrams(text.split())

    kept = dropped = 0
    with (out / ".external.txt.partial").open("w", encoding="utf-8") as dst:
        for source in sorted((shared / "lm_text").glob("*.txt.xz")):
            with lzma.open(source, "rt", encoding="utf-8") as src:
                for line in src:
                    sentence = line.strip()
                    if not sentence:
                        continue
                    if sentence in held_out or not ngrams(sentence.split()).isdisjoint(held_grams):
                        dropped += 1
                        continue
                    dst.write(sentence + "\n")
                    kept += 1
    (out / ".external.txt.partial").replace(out / "external.txt")

    transcripts = [t for name in TRAIN for t in texts(work / name / "train.jsonl")]
    (out / "transcripts.txt").write_text("\n".join(transcripts) + "\n", encoding="utf-8")
    print(
        f"lm_corpus: {kept} external sentences kept, {dropped} dropped for overlapping a dev "
        f"transcript; {len(transcripts)} train transcripts -> {out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
