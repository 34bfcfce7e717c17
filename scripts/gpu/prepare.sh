#!/usr/bin/env bash
# Make .gpu/ (git-ignored) for scripts/gpu/train_on_gpu.sh on a device machine: the corpora
# of WORK (made by `STAGES=data scripts/train_default_model.sh`) packed as Opus parts of
# ~30 MiB with their manifests (scripts/gpu/pack_data.py), and wheels of what stt needs beyond
# the machine's own PyTorch image (Python 3.12; versions as in this .venv). Idempotent.
# Usage: scripts/gpu/prepare.sh [WORK=data_cache] [OUT=.gpu]   (PART_MB=30, NO_WHEELS=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${1:-data_cache}"
OUT="${2:-.gpu}"
PY="${PY:-.venv/bin/python}"
"$PY" scripts/gpu/pack_data.py "$WORK" "$OUT" --part-mb "${PART_MB:-30}"

if [ -z "${NO_WHEELS:-}" ]; then
  mkdir -p "$OUT/whl"
  # Pinned to this environment's versions; the rest (numpy, click, PyYAML, tqdm, hypothesis,
  # matplotlib, tensorboard) the machine's image already has.
  versions=$("$PY" -m pip freeze | grep -i -E '^(hydra-core|omegaconf|soundfile|cffi|pycparser|jiwer|rapidfuzz|pyctcdecode|pygtrie|num2words)==')
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$OUT/whl" $versions
  # Source-only on PyPI, pure Python: built into wheels here.
  pure=$("$PY" -m pip freeze | grep -i -E '^(antlr4-python3-runtime|docopt)==')
  # shellcheck disable=SC2086
  "$PY" -m pip wheel -q --no-deps -w "$OUT/whl" $pure
fi
# The accent-holdout base's start (MODELS=accent-base): the default before real speech, from git.
mkdir -p "$OUT/init"
[ -s "$OUT/init/previous_default.pt" ] || git show cc8bea3:stt/assets/default/model.pt \
  > "$OUT/init/previous_default.pt" || rm -f "$OUT/init/previous_default.pt"
du -sh "$OUT"/part-* "$OUT/work" "$OUT/whl" "$OUT/init" 2>/dev/null || true
echo "prepare: device calls, in order (carry each list): $(
  "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["calls"])' "$OUT/parts.json")"
