#!/usr/bin/env bash
# The shipped models' recipe (scripts/train_default_model.sh: train, then anneal) on one GPU,
# for a device machine lent for ~15 minutes: the default (`deep`, warm-started from
# stt/assets/default) and the streaming model (`causal`, from stt/assets/streaming) side by side
# on every corpus, the audio decoded once into GPU memory (data.on_device=true), batches 10x the
# CPU's; first scripts/bench_train_device.py's throughput and MFU (bench/results/train_gpu.json).
# Their best checkpoints (fp32 weights, no optimiser state), logs and metrics go to $OUT.
#
# Prepare here, on the CPU machine (after STAGES=data scripts/train_default_model.sh):
#   bash scripts/gpu/prepare.sh        # .gpu/ (git-ignored): Opus parts, manifests, wheels
# then one device call per part (.gpu/parts.json lists them; each part stays on the machine
# while it is warm), the last one running this script:
#   run(command="du -sh .gpu", carry=[".gpu/part-1"]) ... then
#   run(command="MIN=4 bash scripts/gpu/train_on_gpu.sh",
#       carry=[".gpu/work", ".gpu/whl", ".gpu/init"], timeout_s=600)
# Back here: tar -xzf deep.tar.gz -C DIR (DIR/deep/best-weights.pt, logs, metrics), then
# scripts/package_model.sh DIR/deep/best-weights.pt stt/assets/default (causal:
# stt/assets/streaming): alpha/beta tuned on every dev split, `stt eval` reports.
# Variables: MIN (main-stage minutes per model, 4), ANNEAL_STEPS (600), BATCH (padded audio
# seconds per batch, 1200), EVAL (steps between evaluations, 300), MODELS ("deep causal"; also
# accent-base: scripts/bench_accent.py's base model, from .gpu/init/previous_default.pt),
# INIT_FROM (one start for every model; none: from scratch), BENCH=0 (skip the throughput
# benchmark; BENCH_CONFIGS, BENCH_STEPS), STT_BENCH_RESULTS (its JSON's folder, bench/results),
# PEEK (seconds before a look at the logs and the GPU, 60), G (the packed folder, .gpu), OUT
# (/tmp/out), PY (python3), TRAIN_OVERRIDES (appended; the test runs this on the CPU with a
# tiny model).
set -uo pipefail
cd "$(dirname "$0")/../.."
MIN="${MIN:-4}"; ANNEAL_STEPS="${ANNEAL_STEPS:-600}"; BATCH="${BATCH:-1200}"; EVAL="${EVAL:-300}"
MODELS="${MODELS:-deep causal}"; G="${G:-.gpu}"; OUT="${OUT:-/tmp/out}"; PY="${PY:-python3}"
mkdir -p "$OUT" "$G/runs"
if [ -d "$G/whl" ] && ! "$PY" -c "import hydra, soundfile, jiwer, pyctcdecode, num2words" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$G"/whl/*.whl || exit 3
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 4
"$PY" scripts/gpu/pack_data.py --ready "$G" || exit 5
W="$G/ready"
train_manifests=()
for corpus in librispeech speechocean ljspeech; do train_manifests+=("$W/decoded/$corpus/train.jsonl"); done
for corpus in an4 fsdd synth; do train_manifests+=("$W/$corpus/train.jsonl"); done

if [ "${BENCH:-1}" != 0 ]; then
  # shellcheck disable=SC2086
  "$PY" scripts/bench_train_device.py "${train_manifests[@]}" --configs ${BENCH_CONFIGS:-medium deep} \
    --steps "${BENCH_STEPS:-30}" --batch-seconds "$BATCH" --peak-tflops 989 > "$OUT/bench.log" 2>&1
  echo "bench exit $?"; tail -n 3 "$OUT/bench.log"
  cp "${STT_BENCH_RESULTS:-bench/results}/train_gpu.json" "$OUT/" 2>/dev/null
fi

train() {  # NAME MODEL INIT_FROM [VAR=value ...]: the recipe's stages in $G/runs/NAME
  local name="$1" model="$2" init="${INIT_FROM:-$3}"; shift 3
  env STAGES="train anneal" STT="$PY -m stt" PY="$PY" INIT_FROM="$init" RUN="$G/runs/$name" \
    TRAIN_MINUTES="$MIN" ANNEAL_STEPS="$ANNEAL_STEPS" \
    TRAIN_OVERRIDES="data.max_batch_seconds=$BATCH trainer.eval_every_steps=$EVAL trainer.log_every_steps=50 trainer.tensorboard=false ${TRAIN_OVERRIDES:-}" \
    "$@" bash scripts/train_default_model.sh "$W" "$model" > "$G/runs/$name.log" 2>&1
  echo "$name exit $?" | tee -a "$G/runs/$name.log"
}
for name in $MODELS; do
  case "$name" in
    causal) train causal causal stt/assets/streaming/model.pt & ;;
    # scripts/bench_accent.py's base: the default's shape and recipe without speechocean762,
    # from the default before real speech (which never heard it), grown to 4 stacks first.
    accent-base) train accent-base deep "$G/init/previous_default.pt" \
      STAGES="grow train anneal" GROW_STACKS=4 EXCLUDE=speechocean & ;;
    *) train "$name" "$name" stt/assets/default/model.pt & ;;
  esac
done
sleep "${PEEK:-60}"; tail -n 2 "$G"/runs/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait

for model in $MODELS; do  # the annealed run's best, else the main run's
  best="$G/runs/$model-anneal/best.pt"
  [ -f "$best" ] || best="$G/runs/$model/best.pt"
  "$PY" - "$best" "$G/runs/$model" "$OUT/$model.tar.gz" <<'PY'
import sys, tarfile
from pathlib import Path
from stt.checkpoint import load_checkpoint, save_checkpoint, shippable_state
best, run, out = (Path(p) for p in sys.argv[1:])
files = [run.with_suffix(".log")]
try:
    save_checkpoint(run / "best-weights.pt", shippable_state(load_checkpoint(best), best))
    files.append(run / "best-weights.pt")
except Exception as e:  # noqa: BLE001 - the logs still come back
    print(run.name, "no checkpoint:", e)
for folder in (run, Path(f"{run}-anneal")):
    files += [folder / f for f in ("result.json", "metrics.csv", "config.yaml") if (folder / f).exists()]
with tarfile.open(out, "w:gz") as tar:
    for f in files:
        if f.exists():  # as RUN/NAME (the log: RUN/RUN.log)
            tar.add(f, arcname=f"{run.name if f.suffix == '.log' else f.parent.name}/{f.name}")
print(out.name, out.stat().st_size // 1000, "kB")
PY
done
tail -n 4 "$G"/runs/*.log
