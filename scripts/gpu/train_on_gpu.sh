#!/usr/bin/env bash
# How the shipped models were trained on one GPU (an H200 lent for 15 minutes): the `medium`
# default, the `causal` streaming model and the accent-holdout base of scripts/bench_accent.py,
# side by side for MIN minutes each, then their best checkpoints (fp32 weights, no optimiser
# state) packed into $OUT. Data-loading bound (~1,000 audio-s/s per run with 4 workers).
# Prepare on the CPU machine (.gpu/ is git-ignored via .git/info/exclude):
#   python scripts/gpu/pack_data.py data_cache .gpu/dc        # Opus copies of the corpus
#   git archive HEAD stt conf | tar -x -C .gpu/src            # a clean snapshot of the code
#   pip download ... -d .gpu/whl  hydra-core omegaconf antlr4-python3-runtime soundfile cffi
#     pycparser jiwer rapidfuzz click num2words docopt pyctcdecode pygtrie   # what the GPU lacks
#   cp scripts/gpu/train_on_gpu.sh .gpu/run.sh
# On the GPU machine, from the repo root: MIN=7.5 bash .gpu/run.sh
# Then, back here: scripts/package_model.sh RUN/best.pt stt/assets/{default,streaming}.
set -uo pipefail
MIN="${MIN:-7.5}"; WORKERS="${WORKERS:-4}"; OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
if [ -d .gpu/whl ] && [ -n "${INSTALL-1}" ] && ! python3 -c "import hydra, soundfile, jiwer" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
cd .gpu/src || exit 5
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PY:-python3}"
$PY -c "import torch, torchaudio, soundfile; print(torch.__version__, torchaudio.__version__, soundfile.__libsndfile_version__, torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 4
D=../dc
common=(data.train_weights=[1,2,1] trainer.patience=5 trainer.min_delta=0.005 optim.lr=3e-3
  trainer.max_time_minutes=$MIN trainer.log_every_steps=50 data.num_workers=$WORKERS ${EXTRA:-})
run() {  # NAME MODEL SYNTH_TRAIN SYNTH_DEV
  $PY -m stt train model="$2" "data.train=[$3,$D/an4/train.jsonl,$D/fsdd/train.jsonl]" \
    "data.dev=[$4,$D/an4/dev.jsonl,$D/fsdd/dev.jsonl]" run_dir="runs/$1" "${common[@]}" \
    > "runs/$1.log" 2>&1
  echo "$1 exit $?" | tee -a "runs/$1.log"
}
mkdir -p runs
run medium-gpu medium $D/synth/train.jsonl $D/synth/dev.jsonl &
run causal-gpu causal $D/synth/train.jsonl $D/synth/dev.jsonl &
run accent-base medium $D/accent/base_train.jsonl $D/accent/orig_dev.jsonl &
sleep 45; tail -n 3 runs/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
$PY - "$OUT" <<'PY'
import sys, tarfile
from pathlib import Path
from stt.checkpoint import load_checkpoint, model_from_checkpoint, model_state, save_checkpoint
out = Path(sys.argv[1])
for name in ["medium-gpu", "causal-gpu", "accent-base"]:
    run = Path("runs") / name
    files = [Path(f"runs/{name}.log")]
    try:
        state = load_checkpoint(run / "best.pt")
        model, vocab = model_from_checkpoint(state, run / "best.pt")
        small = model_state(model, vocab)
        small["trained"] = {"epoch": state["epoch"], "step": state["step"], "dev": state.get("dev_results")}
        save_checkpoint(run / "weights.pt", small)
        files.append(run / "weights.pt")
    except Exception as e:
        print(name, "no checkpoint:", e)
    files += [run / f for f in ("result.json", "metrics.csv", "curves.png", "config.yaml") if (run / f).exists()]
    with tarfile.open(out / f"{name}.tar.gz", "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
    print(name, (out / f"{name}.tar.gz").stat().st_size // 1000, "kB")
PY
tail -n 4 runs/*.log
