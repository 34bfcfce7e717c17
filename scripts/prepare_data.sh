#!/usr/bin/env bash
# The data recipe of the shipped default model (issue 12), idempotent:
#   - the synthetic multi-voice corpus (train/dev, and a test split of voices never heard);
#   - a speaker-disjoint dev split (about 10% of the audio, whole speakers) of every real corpus
#     in ../shared/data: LibriSpeech mini, speechocean762 (its prompts repeat, so its dev split
#     is speaker- but not text-disjoint), AN4, FSDD; LJSpeech has one reader, so its dev split is
#     book-disjoint instead (LJ050, a different book from LJ001/LJ002);
#   - `stt data validate` on every manifest (each file decodes, durations and text agree).
# Writes WORK_DIR/<corpus>/{train,dev}.jsonl (audio stays in ../shared/data) and WORK_DIR/synth/.
# Usage: scripts/prepare_data.sh [WORK_DIR=data_cache]    (SHARED=..., SYNTH_HOURS=2.8 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-data_cache}"
SHARED="${SHARED:-../shared/data}"
SYNTH_HOURS="${SYNTH_HOURS:-2.8}"
STT="${STT:-.venv/bin/stt}"

if [ ! -d "$SHARED" ]; then
  echo "prepare_data: error: $SHARED not found (set SHARED=path/to/shared/data)" >&2
  exit 2
fi

# Synthetic speech: skips utterances already rendered, so a rerun costs seconds.
$STT synth "$WORK/synth" --hours "$SYNTH_HOURS" --seed 1 --no-progress

split() {  # split NAME MANIFEST ARGS...: rewritten only when the source manifest is newer
  local name="$1" manifest="$2"
  shift 2
  if [ -f "$WORK/$name/dev.jsonl" ] && [ "$WORK/$name/dev.jsonl" -nt "$manifest" ] \
     && [ "$WORK/$name/dev.jsonl" -nt "$0" ]; then
    echo "prepare_data: $WORK/$name: up to date"
    return
  fi
  $STT data split "$manifest" "$WORK/$name" "$@"
}
split an4 "$SHARED/an4_train/manifest.jsonl" --dev-fraction 0.1 --speaker-pattern '^([^_]+)_'
split fsdd "$SHARED/fsdd_train/manifest.jsonl" --dev-fraction 0.15 \
  --speaker-pattern '^\d+_([a-z]+)_'
split librispeech "$SHARED/librispeech_mini/manifest.jsonl" --dev-fraction 0.1
split speechocean "$SHARED/speechocean762/manifest.jsonl" --dev-fraction 0.1
split ljspeech "$SHARED/ljspeech/manifest.jsonl" --speaker-pattern '^(LJ\d+)-' \
  --dev-speakers LJ050

manifests=("$WORK"/synth/{train,dev,test}.jsonl)
for name in an4 fsdd librispeech speechocean ljspeech; do
  manifests+=("$WORK/$name/train.jsonl" "$WORK/$name/dev.jsonl")
done
# Validated once per content: stt synth rewrites its manifests (same bytes) on every run.
stamp="$WORK/.validated"
digest="$(cat "${manifests[@]}" | sha1sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  echo "prepare_data: manifests already validated"
else
  $STT data validate "${manifests[@]}" --no-progress
  echo "$digest" > "$stamp"
fi
echo "prepare_data: ready in $WORK/"
