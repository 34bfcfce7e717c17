#!/usr/bin/env bash
# Set up everything stt needs on a Debian/Ubuntu machine, idempotently:
#   1. system packages (espeak-ng, flite, fortunes, wordnet-base) via apt when root,
#      otherwise a clear message naming them;
#   2. a virtualenv in .venv/ with the package installed in editable mode (+ extras given as $1);
#   3. KenLM's lmplz and build_binary (for `stt lm build`), compiled into .venv/bin/ by
#      scripts/build_kenlm.sh from the kenlm source distribution, since no package ships them;
#      its compilers and libraries (KENLM_BUILD_PACKAGES) are only required until that is done.
# Re-running is cheap: apt is skipped when the packages are present, pip is skipped when
# setup.cfg has not changed since the last successful install, and KenLM when its tools run.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(espeak-ng flite fortunes fortunes-min wordnet-base)
KENLM_BUILD_PACKAGES=(cmake make g++ libboost-program-options-dev libboost-system-dev
  libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
if ! bash scripts/build_kenlm.sh --check; then
  APT_PACKAGES+=("${KENLM_BUILD_PACKAGES[@]}")
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Optional: tests/test_serve_page.py drives Debian's chromium with Playwright, and is skipped
# (saying why) where it cannot be installed; a failure here does not stop the set-up.
if [[ ",$EXTRAS," == *",serve-test,"* ]] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (for the web page's browser test)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
      >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y \
      -qq --no-install-recommends chromium >/dev/null; } \
      || echo "setup: chromium could not be installed: the browser test will be skipped" >&2
  else
    echo "setup: no chromium (sudo apt-get install chromium): the browser test will be skipped" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv/"
  "$PYTHON" -m venv .venv
fi

spec=".${EXTRAS:+[$EXTRAS]}"
stamp=".venv/.stt-installed${EXTRAS:+-$EXTRAS}"
fingerprint="$(cat setup.cfg pyproject.toml | sha1sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
  # The distribution was called `stt` before it became wavenet-stt (`stt` on PyPI is Coqui STT):
  # drop such an editable install of this checkout first, or two distributions own bin/stt.
  if .venv/bin/python -I - "$PWD" <<'PY'
import json, sys
from importlib.metadata import distributions
from pathlib import Path
from urllib.parse import unquote, urlparse
for dist in distributions(name="stt"):
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable") and url.startswith("file:"):
        if Path(unquote(urlparse(url).path)) == Path(sys.argv[1]):
            sys.exit(0)
sys.exit(1)
PY
  then
    echo "setup: replacing the old editable install named stt with wavenet-stt"
    .venv/bin/python -m pip uninstall --quiet -y stt
    rm -rf stt.egg-info
  fi
  echo "setup: installing wavenet-stt${EXTRAS:+[$EXTRAS]} (import stt, command stt) into .venv/" \
    "(first time: a few minutes, torch is large)"
  .venv/bin/python -m pip install --quiet -e "$spec"
  echo "$fingerprint" > "$stamp"
fi
bash scripts/build_kenlm.sh  # silent when lmplz and build_binary are already built
echo "setup: ready (.venv/bin/stt)"
