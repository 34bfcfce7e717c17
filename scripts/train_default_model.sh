#!/usr/bin/env bash
# Reproduce the shipped default model end to end on a CPU (a GPU is used if torch sees one):
#   data     scripts/prepare_data.sh: synthetic corpus, speaker-disjoint dev splits of every real
#            corpus in ../shared/data, validated; FLAC copies of the Opus train audio (fast reads);
#   train    `medium` warm-started from the previous default, on all real train splits plus
#            synthetic speech, LibriSpeech (the open-vocabulary readers) and AN4 weighted x2, the
#            rest x1 (TRAIN_WEIGHTS; the shipped run began with FSDD and synthetic at x0.5 for its
#            first 5 epochs, which left FSDD digits misspelt), so no corpus drowns the reader data; stops at
#            the dev-loss plateau or after TRAIN_MINUTES (rerun to continue: trainer.resume=auto
#            resumes exactly from the last checkpoint, written every 100 steps);
#   grow     (not in the default STAGES) INIT_FROM grown to GROW_CHANNELS x GROW_STACKS with the
#            same function (scripts/grow_model.py) as RUN/grown.pt, at GROW_DROPOUT if given
#            (init_from keeps a checkpoint's own rate otherwise): the start of a bigger model,
#            trained on by the train stage (init_from) or the anneal stage (when RUN has no last.pt);
#   anneal   a short second run from the main run's last checkpoint with a fresh optimiser and the
#            learning rate decayed to ~0 on a cosine over ANNEAL_STEPS (~1 epoch): the main run's
#            inverse-sqrt schedule never lowers the rate far enough for the final settling;
#   lm       scripts/build_lm.sh: the pruned, 8-bit quantised 4-gram of lm_text/ + transcripts;
#   package  scripts/package_model.sh: alpha/beta tuned on every dev split, fp16 weights, LM and
#            decoder.yaml into stt/assets/default/, `stt eval` reports in bench/results/.
# Usage: scripts/train_default_model.sh [WORK_DIR=data_cache] [MODEL=medium]
#   STAGES="data train anneal lm package" (default: all), TRAIN_MINUTES=85, ANNEAL_STEPS=600, INIT_FROM=checkpoint|none,
#   TRAIN_WEIGHTS="2,1,1,2,1,1" (librispeech, speechocean, ljspeech, an4, fsdd, synth),
#   TRAIN_OVERRIDES="key=value ..." (appended to stt train: tests use a tiny model), SHARED=...,
#   GROW_CHANNELS=, GROW_STACKS=, GROW_DROPOUT= (the grow stage's shape and dropout; empty:
#   unchanged), ANNEAL_LR=4.5e-4 (the anneal's peak rate),
#   EXCLUDE="speechocean" (corpora left out of train and dev; scripts/bench_accent.py's base),
#   RUN=WORK/runs/MODEL-real (the run folder; the anneal run is RUN-anneal),
#   ASSETS=stt/assets/default (where package puts the model; its report goes to
#   bench/results/NAME_model). The shipped streaming model is the same recipe with MODEL=causal
#   INIT_FROM=stt/assets/streaming/model.pt ASSETS=stt/assets/streaming.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-data_cache}"
MODEL="${2:-medium}"
STAGES="${STAGES:-data train anneal lm package}"
ANNEAL_STEPS="${ANNEAL_STEPS:-600}"
ANNEAL_LR="${ANNEAL_LR:-4.5e-4}"
TRAIN_MINUTES="${TRAIN_MINUTES:-85}"
TRAIN_WEIGHTS="${TRAIN_WEIGHTS:-2,1,1,2,1,1}"
INIT_FROM="${INIT_FROM:-stt/assets/default/model.pt}"
STT="${STT:-.venv/bin/stt}"
RUN="${RUN:-$WORK/runs/$MODEL-real}"
EXCLUDE="${EXCLUDE:-}"
ASSETS="${ASSETS:-stt/assets/default}"
ANNEAL_RUN="$RUN-anneal"
W="$WORK"
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has data; then
  bash scripts/prepare_data.sh "$WORK"
  for corpus in librispeech speechocean ljspeech; do
    $STT data decode "$W/$corpus/train.jsonl" "$W/decoded/$corpus" --no-progress
  done
fi

# The corpora in TRAIN_WEIGHTS' order (the Opus ones read from their decoded FLAC copies; the
# same list for the Python scripts: scripts/recipe_corpora.py),
# less EXCLUDE, as stt train's data.train, data.train_weights and data.dev values.
CORPORA=(librispeech speechocean ljspeech an4 fsdd synth)
IFS=, read -r -a WEIGHTS <<< "$TRAIN_WEIGHTS"
TRAIN_LIST="" WEIGHT_LIST="" DEV_LIST=""
for i in "${!CORPORA[@]}"; do
  corpus="${CORPORA[$i]}"
  [[ " $EXCLUDE " == *" $corpus "* ]] && continue
  train="$W/$corpus/train.jsonl"
  [[ " librispeech speechocean ljspeech " == *" $corpus "* ]] && train="$W/decoded/$corpus/train.jsonl"
  TRAIN_LIST+="${TRAIN_LIST:+,}$train" WEIGHT_LIST+="${WEIGHT_LIST:+,}${WEIGHTS[$i]}"
  DEV_LIST+="${DEV_LIST:+,}$W/$corpus/dev.jsonl"
done

# stt train on every real train split plus synthetic speech, scored on every dev split. The
# audio is decoded once into memory (data.on_device: 2 GB for the 17 h): on 2 cores the
# DataLoader's workers decoding FLAC took a core from the model, ~30 audio-s/s against 42-52.
train_on_real_data() {
  local run_dir="$1"; shift
  $STT train model="$MODEL" "data.train=[$TRAIN_LIST]" "data.train_weights=[$WEIGHT_LIST]" \
    "data.dev=[$DEV_LIST]" run_dir="$run_dir" trainer.checkpoint_every_steps=100 \
    trainer.log_every_steps=20 trainer.progress=false data.on_device=true "$@" ${TRAIN_OVERRIDES:-}
}

if has grow && [ ! -f "$RUN/grown.pt" ]; then
  "${PY:-.venv/bin/python}" scripts/grow_model.py "$INIT_FROM" "$RUN/grown.pt" \
    ${GROW_CHANNELS:+--channels "$GROW_CHANNELS"} ${GROW_STACKS:+--stacks "$GROW_STACKS"} \
    ${GROW_DROPOUT:+--dropout "$GROW_DROPOUT"}
fi

if has train; then
  init=()
  # Warm start only for a new run: a resumed run continues from its own last.pt.
  if [ -f "$RUN/grown.pt" ] && [ ! -f "$RUN/last.pt" ]; then
    init=("init_from=$RUN/grown.pt")
  elif [ "$INIT_FROM" != none ] && [ ! -f "$RUN/last.pt" ]; then
    # The previous default is the starting point; copy it first, packaging overwrites it.
    mkdir -p "$RUN"
    cp -n "$INIT_FROM" "$RUN/init.pt"
    init=("init_from=$RUN/init.pt")
  fi
  train_on_real_data "$RUN" "${init[@]}" trainer.patience=4 trainer.min_delta=0.005 \
    trainer.max_time_minutes="$TRAIN_MINUTES" optim.lr=2e-3
fi

if has anneal; then
  # A fresh run (its own folder), resumable like the main one; the main run is left as it was.
  init=()
  if [ ! -f "$ANNEAL_RUN/last.pt" ]; then
    mkdir -p "$ANNEAL_RUN"
    start="$RUN/last.pt"
    [ -f "$start" ] || start="$RUN/grown.pt"  # grown, not trained further
    cp "$start" "$ANNEAL_RUN/init.pt"
    init=("init_from=$ANNEAL_RUN/init.pt")
  fi
  train_on_real_data "$ANNEAL_RUN" "${init[@]}" optim.lr="$ANNEAL_LR" optim.schedule=cosine \
    optim.warmup_steps=$((ANNEAL_STEPS / 20)) optim.total_steps="$ANNEAL_STEPS" optim.min_lr_ratio=0.02 \
    trainer.max_steps="$ANNEAL_STEPS" trainer.eval_every_steps=$((ANNEAL_STEPS / 2)) \
    trainer.patience=4
fi

if has lm; then
  bash scripts/build_lm.sh "$WORK"
fi

if has package; then
  # The annealed model when that stage ran, else the main run's best.
  best="$RUN/best.pt"
  [ -f "$ANNEAL_RUN/best.pt" ] && best="$ANNEAL_RUN/best.pt"
  RETUNE=1 bash scripts/package_model.sh "$best" "$ASSETS" "$WORK" \
    "bench/results/$(basename "$ASSETS")_model"
fi
