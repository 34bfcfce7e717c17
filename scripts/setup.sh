#!/usr/bin/env bash
# Set up everything stt needs on a Debian/Ubuntu machine, idempotently:
#   1. system packages (espeak-ng, flite, fortunes, wordnet-base) via apt when root,
#      otherwise a clear message naming them;
#   2. a virtualenv in .venv/ with the package installed in editable mode (+ extras given as $1).
# Re-running is cheap: apt is skipped when the packages are present and pip is skipped when
# setup.cfg has not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(espeak-ng flite fortunes fortunes-min wordnet-base)

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

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv/"
  "$PYTHON" -m venv .venv
fi

spec=".${EXTRAS:+[$EXTRAS]}"
stamp=".venv/.stt-installed${EXTRAS:+-$EXTRAS}"
fingerprint="$(cat setup.cfg pyproject.toml | sha1sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
  echo "setup: installing stt${EXTRAS:+[$EXTRAS]} into .venv/ (first time: a few minutes, torch is large)"
  .venv/bin/python -m pip install --quiet -e "$spec"
  echo "$fingerprint" > "$stamp"
fi
echo "setup: ready (.venv/bin/stt)"
