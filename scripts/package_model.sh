#!/usr/bin/env bash
# Package a trained checkpoint as a shipped model: tune the beam decoder's LM weights (alpha,
# beta) on every dev split (at most 100 utterances of each, the mean WER over the splits decides),
# write fp16 weights + decoder.yaml (+ the LM, or a path to the
# default's) into ASSETS, and evaluate greedy and beam+LM on the dev and test sets into REPORT.
# Usage: scripts/package_model.sh CHECKPOINT ASSETS [WORK_DIR=data_cache] [REPORT_DIR]
#   BEAM_WIDTH=32 (the beam alpha/beta are tuned for and decoder.yaml ships), RETUNE=1
#   e.g. scripts/package_model.sh data_cache/runs/causal-gpu/best.pt stt/assets/streaming
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="$1"
ASSETS="$2"
WORK="${3:-data_cache}"
REPORT="${4:-bench/results/$(basename "$ASSETS")_model}"
STT=.venv/bin/stt
PY=.venv/bin/python
BEAM_WIDTH="${BEAM_WIDTH:-32}"
RUN="$(dirname "$CKPT")"
DEV=()
for name in librispeech speechocean ljspeech an4 fsdd synth; do DEV+=("$WORK/$name/dev.jsonl"); done
TEST=("$WORK/synth/test.jsonl" examples/references.jsonl)

if [ ! -f "$RUN/decoder.yaml" ] || [ -n "${RETUNE:-}" ]; then  # RETUNE=1 to redo a finished sweep
  rm -f "$RUN/decoder.yaml"
  TUNE=()
  for dev in "${DEV[@]}"; do  # a seeded sample of each split, same name as the split
    name="$(basename "$(dirname "$dev")")"
    mkdir -p "$WORK/tune/$name"
    $PY -c "import random, sys; from stt.data.manifest import read_manifest, write_manifest; \
u = read_manifest(sys.argv[1]); random.Random(1).shuffle(u); write_manifest(sys.argv[2], u[:100])" \
      "$dev" "$WORK/tune/$name/dev.jsonl"
    TUNE+=("$WORK/tune/$name/dev.jsonl")
  done
  $STT eval "$CKPT" "${TUNE[@]}" --decoders beam --lm "$WORK/lm/lm.bin" \
    --multirun decoder.alpha=0.5,0.7,0.9 decoder.beta=1.5,2.5,3.5,4.5 \
    decoder.beam_width="$BEAM_WIDTH" --out "$RUN/tuning" \
    --no-progress
fi

mkdir -p "$ASSETS"
$PY - "$CKPT" "$WORK" "$ASSETS" <<'PY'
import os, shutil, sys
from pathlib import Path
from omegaconf import OmegaConf
from stt.checkpoint import load_checkpoint, save_checkpoint, shippable_state
ckpt, work, assets = (Path(p) for p in sys.argv[1:])
small = shippable_state(load_checkpoint(ckpt), ckpt)
small["model"] = {k: v.half() if v.is_floating_point() else v for k, v in small["model"].items()}
save_checkpoint(assets / "model.pt", small)
tuned = OmegaConf.load(ckpt.parent / "decoder.yaml")
default = Path("stt/assets/default")
if assets.resolve() == default.resolve():
    shutil.copy(work / "lm" / "lm.bin", assets / "lm.bin")
    shutil.copy(work / "lm" / "unigrams.txt", assets / "unigrams.txt")
    tuned.lm, tuned.unigrams = "lm.bin", "unigrams.txt"
else:  # share the default's LM rather than ship a second copy
    tuned.lm = os.path.relpath(default / "lm.bin", assets)
    tuned.unigrams = os.path.relpath(default / "unigrams.txt", assets)
OmegaConf.save(tuned, assets / "decoder.yaml")
print(f"packaged into {assets}: " + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(assets.iterdir())))
PY
$STT eval "$ASSETS/model.pt" "${DEV[@]}" "${TEST[@]}" --decoders greedy beam --out "$REPORT" \
  --no-progress
