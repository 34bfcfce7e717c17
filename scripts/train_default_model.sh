#!/usr/bin/env bash
# Reproduce the shipped default model end to end on a CPU (or a GPU if torch sees one):
#   1. corpus: 2.8 h synthetic speech (seed 1) + the real recordings in ../shared/data (AN4 and
#      FSDD train parts) with speaker-disjoint dev splits (the examples/ speakers are in them);
#   2. training: MODEL (the shipped default is `medium`, trained on a GPU with scripts/gpu/) until
#      the dev loss plateaus (rerun to continue);
#   3. LM: 3-gram from the synthetic corpus's *train* sentence pool (never its dev/test
#      sentences) plus the AN4/FSDD train transcripts, pruned to stay small;
#   4-5. scripts/package_model.sh: decoder tuning (alpha, beta) on synth/dev, packaging into
#      stt/assets/default/ (fp16 weights, lm.bin, unigrams.txt, decoder.yaml), and greedy and
#      beam+LM evaluation reports into bench/results/default_model/.
# Usage: scripts/train_default_model.sh [WORK_DIR=data_cache] [MODEL=medium]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-data_cache}"
MODEL="${2:-medium}"
STT=.venv/bin/stt
PY=.venv/bin/python
RUN="$WORK/runs/$MODEL-v1"

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

# 4-5. Tuning, packaging into stt/assets/default/, evaluation --------------------------------
RETUNE=1 bash scripts/package_model.sh "$RUN/best.pt" stt/assets/default "$WORK" bench/results/default_model
