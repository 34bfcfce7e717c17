#!/usr/bin/env bash
# The language models of issue 12: KenLM 3- and 4-grams of lm_text/ (minus sentences overlapping
# our dev splits, see scripts/lm_corpus.py) plus every train transcript, singletons (and rarer)
# pruned, 8-bit quantised trie (build_binary -q 8 -b 8 -a 22). Each goes to WORK/lm/NAME/;
# WORK/lm/ itself gets the one named by LM_CHOICE, the one scripts/package_model.sh ships.
# scripts/bench_lm.py compares them (dev WER vs size vs beam-search speed).
# Usage: scripts/build_lm.sh [WORK_DIR=data_cache]     (LM_CHOICE=4gram-small by default: under the 20 MiB file limit; idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-data_cache}"
LM_CHOICE="${LM_CHOICE:-4gram-small}"
STT="${STT:-.venv/bin/stt}"
PY="${PY:-.venv/bin/python}"
TEXT="$WORK/lm_text"

[ -f "$TEXT/external.txt" ] || $PY scripts/lm_corpus.py "$WORK" "${SHARED:-../shared/data}"

build() {  # build NAME ORDER PRUNE...: skipped when WORK/lm/NAME/lm.json is already there
  local name="$1" order="$2"
  shift 2
  if [ -f "$WORK/lm/$name/lm.json" ]; then
    echo "build_lm: $WORK/lm/$name: already built"
    return
  fi
  $STT lm build "$TEXT/external.txt" "$TEXT/transcripts.txt" "$WORK/lm/$name" --order "$order" \
    --prune "$@" --quantize 8 --memory "${LM_MEMORY:-4G}" --no-progress
  rm -f "$WORK/lm/$name/lm.arpa" "$WORK/lm/$name/corpus.txt"  # large, and rebuilt on demand
}
build 3gram 3 0 1 1
build 4gram 4 0 1 1 1
build 4gram-small 4 0 1 2 3

for f in lm.bin unigrams.txt lm.json; do
  cp "$WORK/lm/$LM_CHOICE/$f" "$WORK/lm/$f"
done
echo "build_lm: $WORK/lm/lm.bin is $LM_CHOICE ($(du -h "$WORK/lm/lm.bin" | cut -f1))"
