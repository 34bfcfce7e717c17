#!/usr/bin/env bash
# The reference training run of issue 3, end to end on the CPU:
#   2.8 h synthetic corpus (>= 2 h of train audio) + the real recordings in ../shared/data (AN4 and
#   FSDD train parts, with speaker-disjoint dev splits), `small` model, until the plateau stop;
#   then a greedy evaluation of best.pt on every dev set, and the curve + figures copied into
#   bench/results/. Rerunning continues an interrupted run (trainer.resume=auto).
#   Usage: scripts/train_reference_run.sh [WORK_DIR=data_cache] [MODEL=small]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-data_cache}"
MODEL="${2:-small}"
SHARED="${SHARED:-../shared/data}"
STT=.venv/bin/stt
RUN="$WORK/runs/$MODEL-v1"

$STT synth "$WORK/synth" --hours 2.8 --seed 1 --no-progress
$STT data split "$SHARED/an4_train/manifest.jsonl" "$WORK/an4" --dev-fraction 0.1 \
  --speaker-pattern '^([^_]+)_'
$STT data split "$SHARED/fsdd_train/manifest.jsonl" "$WORK/fsdd" --dev-fraction 0.15 \
  --speaker-pattern '^\d+_([a-z]+)_'

$STT train model="$MODEL" \
  "data.train=[$WORK/synth/train.jsonl,$WORK/an4/train.jsonl,$WORK/fsdd/train.jsonl]" \
  "data.train_weights=[1,2,1]" \
  "data.dev=[$WORK/synth/dev.jsonl,$WORK/an4/dev.jsonl,$WORK/fsdd/dev.jsonl]" \
  run_dir="$RUN" trainer.patience=3 trainer.min_delta=0.01 trainer.max_time_minutes=80 \
  trainer.log_every_steps=20 optim.lr=3e-3

$STT eval "$RUN/best.pt" "$WORK/synth/dev.jsonl" "$WORK/an4/dev.jsonl" "$WORK/fsdd/dev.jsonl" \
  "$WORK/synth/test.jsonl" --decoders greedy --out "$RUN/eval" --no-progress

.venv/bin/python - "$RUN" "$MODEL" <<'PY'
import json, shutil, sys
from pathlib import Path
run, model = Path(sys.argv[1]), sys.argv[2]
out = Path("bench/results")
shutil.copy(run / "curves.png", out / f"train_run_{model}.png")
result = json.loads((run / "result.json").read_text())
report = json.loads((run / "eval" / "report.json").read_text())
record = out / f"train_run_{model}.json"
if record.exists() and json.loads(record.read_text()).get("steps") == result["step"]:
    # Nothing new was trained: keep the record of the run (with its notes) as it is.
    print(f"{record}: already records this run")
    sys.exit(0)
greedy = report["decoders"]["greedy"]
json.dump({
    "run": "scripts/train_reference_run.sh",
    "model": report["model"],
    "stop_reason": result["stop_reason"],
    "epochs": result["epoch"],
    "steps": result["step"],
    "dropped_infeasible": result["dropped_infeasible"],
    "skipped_steps": result["skipped_steps"],
    "best_dev_loss": result["best_metric"],
    "wall_minutes_last_invocation": result.get("wall_minutes"),
    "best_checkpoint_greedy": {n: {"wer": round(f["wer"], 4), "cer": round(f["cer"], 4),
                                   "utterances": f["utterances"], "hours": round(f["hours"], 3)}
                               for n, f in greedy["sets"].items()},
}, open(out / f"train_run_{model}.json", "w"), indent=2)
print(f"-> bench/results/train_run_{model}.json, train_run_{model}.png")
PY
