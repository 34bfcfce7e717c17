#!/usr/bin/env bash
# Reproduce the shipped default model end to end on a CPU (or a GPU if torch sees one):
#   1. corpus: 2.8 h synthetic speech (seed 1) + the real recordings in ../shared/data (AN4 and
#      FSDD train parts) with speaker-disjoint dev splits (the examples/ speakers are in them);
#   2. training: MODEL (`small` ships today) until the dev loss plateaus (rerun to continue);
#   3. LM: 3-gram from the synthetic corpus's *train* sentence pool (never its dev/test
#      sentences) plus the AN4/FSDD train transcripts, pruned to stay small;
#   4. decoder tuning (alpha, beta) on the dev sets, evaluation of greedy and beam+LM;
#   5. packaging into stt/assets/default/ (fp16 weights, lm.bin, unigrams.txt, decoder.yaml) and
#      the evaluation reports into bench/results/default_model/.
# Usage: scripts/train_default_model.sh [WORK_DIR=data_cache] [MODEL=small]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-data_cache}"
MODEL="${2:-small}"
STT=.venv/bin/stt
PY=.venv/bin/python
RUN="$WORK/runs/$MODEL-v1"
ASSETS=stt/assets/default
DEV=("$WORK/synth/dev.jsonl" "$WORK/an4/dev.jsonl" "$WORK/fsdd/dev.jsonl")
TEST=("$WORK/synth/test.jsonl" examples/references.jsonl)

# 1-2. Corpus and training until the plateau (the reference run; it resumes if interrupted) ---
bash scripts/train_reference_run.sh "$WORK" "$MODEL"

# 3. Language model ----------------------------------------------------------------------------
mkdir -p "$WORK/lm_text"
$PY - "$WORK" <<'PY'
import sys
from pathlib import Path
from stt.data.manifest import read_manifest
from stt.data.synth import SynthConfig, load_sentences, split_sentences
from stt.text import Vocabulary
work = Path(sys.argv[1])
cfg = SynthConfig(out_dir=str(work / "synth"), seed=1, progress=False)
pools = split_sentences(load_sentences(cfg, Vocabulary.default()), cfg)
(work / "lm_text" / "synth_train_pool.txt").write_text("\n".join(pools["train"]) + "\n")
real = [u.text for name in ("an4", "fsdd") for u in read_manifest(work / name / "train.jsonl")]
(work / "lm_text" / "real_train.txt").write_text("\n".join(real) + "\n")
print(f"LM text: {len(pools['train'])} synthetic-pool sentences, {len(real)} real transcripts")
PY
$STT lm build "$WORK/lm_text/synth_train_pool.txt" "$WORK/lm_text/real_train.txt" "$WORK/lm" \
  --order 3 --prune 0 1 1 --no-progress

# 4. Tuning and evaluation ---------------------------------------------------------------------
rm -f "$RUN/decoder.yaml"
$STT eval "$RUN/best.pt" "$WORK/synth/dev.jsonl" --decoders beam --lm "$WORK/lm/lm.bin" \
  --multirun decoder.alpha=0.3,0.6,0.9 decoder.beta=0.5,1.5,2.5 --out "$RUN/tuning" --no-progress

# 5. Packaging ---------------------------------------------------------------------------------
mkdir -p "$ASSETS"
$PY - "$RUN" "$WORK" "$ASSETS" <<'PY'
import shutil, sys
from pathlib import Path
import torch
from omegaconf import OmegaConf
from stt.training.checkpoint import load_checkpoint, model_state, save_checkpoint, model_from_checkpoint
run, work, assets = (Path(p) for p in sys.argv[1:])
state = load_checkpoint(run / "best.pt")
model, vocab = model_from_checkpoint(state, run / "best.pt")
small = model_state(model, vocab)
small["model"] = {k: v.half() if v.is_floating_point() else v for k, v in small["model"].items()}
small["trained"] = {"epoch": state["epoch"], "step": state["step"], "dev": state.get("dev_results")}
save_checkpoint(assets / "model.pt", small)
shutil.copy(work / "lm" / "lm.bin", assets / "lm.bin")
shutil.copy(work / "lm" / "unigrams.txt", assets / "unigrams.txt")
tuned = OmegaConf.load(run / "decoder.yaml")
tuned.lm, tuned.unigrams = "lm.bin", "unigrams.txt"
OmegaConf.save(tuned, assets / "decoder.yaml")
print(f"packaged into {assets}: " + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(assets.iterdir())))
PY
$STT eval "$ASSETS/model.pt" "${DEV[@]}" "${TEST[@]}" --decoders greedy beam \
  --out bench/results/default_model --no-progress
