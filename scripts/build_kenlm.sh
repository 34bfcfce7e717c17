#!/usr/bin/env bash
# Build KenLM's `lmplz` and `build_binary` into .venv/bin/, idempotently.
#
# `stt lm build` needs KenLM's real estimator (lmplz) and its binary-format converter
# (build_binary), but no Debian or PyPI package ships them: the `kenlm` wheel only has the
# Python query module. So we compile the two programs from the `kenlm` source distribution on
# PyPI, the same version as the installed Python module so that the binary format matches.
#
#   bash scripts/build_kenlm.sh           # build if missing or broken, else exit 0 silently
#   bash scripts/build_kenlm.sh --check   # exit 0 if both tools are installed and run, else 1
#   bash scripts/build_kenlm.sh --force   # rebuild even if they are there
#
# Needs cmake, make, g++ and the boost (program_options, system, thread, test), zlib, bz2 and
# lzma development files: on Debian/Ubuntu, the packages listed in NEEDED below. Takes about a
# minute on two cores. KENLM_JOBS sets the parallel compile jobs (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
PY="$BIN/python"
JOBS="${KENLM_JOBS:-2}"
say() { echo "build_kenlm: $*"; }
die() { echo "build_kenlm: error: $*" >&2; exit 1; }

# A tool counts as installed only if it starts and prints its usual help: a binary whose boost
# libraries were removed fails to load and is rebuilt. (Both exit 1 after their help text.)
runs() {
  local out
  [ -x "$1" ] || return 1
  out="$("$1" "$2" 2>&1 || true)"
  [[ "$out" == *"$3"* ]]
}
installed() {
  runs "$BIN/lmplz" --help "Kneser-Ney" && runs "$BIN/build_binary" -h "probing"
}

case "${1:-}" in
  --check) installed; exit ;;
  --force) ;;
  "") installed && exit 0 ;;
  *) die "unknown option '$1' (use --check or --force)" ;;
esac

[ -x "$PY" ] || die "$PY not found: run scripts/setup.sh first (it creates .venv/)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/build_kenlm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# ---- 1. build tools and libraries -----------------------------------------------------------
say "checking build tools (cmake, make, g++, boost, zlib, bz2, lzma)"
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
if ! command -v g++ >/dev/null; then
  missing+=(g++)
else
  # header : library to link : Debian package. A header that preprocesses and a library that
  # links is exactly what cmake's find_package needs later, so this catches every gap up front.
  for dep in \
      "boost/program_options.hpp:boost_program_options:libboost-program-options-dev" \
      "boost/system/error_code.hpp:boost_system:libboost-system-dev" \
      "boost/thread/thread.hpp:boost_thread:libboost-thread-dev" \
      "boost/test/unit_test.hpp:boost_unit_test_framework:libboost-test-dev" \
      "zlib.h:z:zlib1g-dev" \
      "bzlib.h:bz2:libbz2-dev" \
      "lzma.h:lzma:liblzma-dev"; do
    IFS=: read -r header lib pkg <<<"$dep"
    if ! printf '#include <%s>\n' "$header" | g++ -E -x c++ - -o /dev/null 2>/dev/null \
        || ! printf 'int main() { return 0; }\n' \
             | g++ -x c++ - -o "$tmp/linktest" "-l$lib" 2>/dev/null; then
      missing+=("$pkg")
    fi
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  die "cannot build lmplz/build_binary, missing: ${missing[*]}
build_kenlm: install them with: sudo apt-get install ${missing[*]}
build_kenlm: (scripts/setup.sh does this when run as root), then rerun scripts/build_kenlm.sh"
fi

# ---- 2. the source distribution --------------------------------------------------------------
version="$("$PY" -c 'import importlib.metadata as m; print(m.version("kenlm"))' 2>/dev/null)" \
  || die "the kenlm Python module is not installed in .venv: run scripts/setup.sh first"
say "fetching the kenlm==$version source distribution from PyPI"
# --no-binary kenlm (not :all:): pip prepares the sdist's metadata in an isolated environment,
# and :all: would make it compile that environment's build dependency cmake from source too.
if ! "$PY" -m pip download --quiet --no-deps --no-binary kenlm --dest "$tmp/dl" \
    "kenlm==$version" >"$tmp/pip.log" 2>&1; then
  grep -v 'is ignored: it is neither' "$tmp/pip.log" | tail -n 15 >&2
  die "pip could not download the kenlm==$version source distribution (see above)"
fi
sdist="$(find "$tmp/dl" -maxdepth 1 -name 'kenlm-*.tar.gz' | head -n 1)"
[ -n "$sdist" ] || die "pip downloaded no kenlm-*.tar.gz source distribution into $tmp/dl"
mkdir "$tmp/src"
tar -xzf "$sdist" -C "$tmp/src" --strip-components=1
for f in CMakeLists.txt lm/builder/lmplz_main.cc lm/build_binary_main.cc; do
  [ -f "$tmp/src/$f" ] || die "$(basename "$sdist") has no $f: not a full KenLM source tree"
done

# ---- 3. compile only the two programs --------------------------------------------------------
say "configuring with cmake (Release)"
if ! nice cmake -S "$tmp/src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCOMPILE_TESTS=OFF -DENABLE_PYTHON=OFF >"$tmp/cmake.log" 2>&1; then
  tail -n 25 "$tmp/cmake.log" >&2
  die "cmake could not configure KenLM (see above)"
fi
say "compiling lmplz and build_binary (-j$JOBS; about a minute on two cores)"
start=$SECONDS
if ! nice cmake --build "$tmp/build" --target lmplz build_binary -j "$JOBS" \
    >"$tmp/make.log" 2>&1; then
  grep -E -B2 -A8 'error' "$tmp/make.log" | tail -n 40 >&2 || tail -n 40 "$tmp/make.log" >&2
  die "compiling KenLM failed (see above)"
fi

# ---- 4. install ------------------------------------------------------------------------------
for tool in lmplz build_binary; do
  # Copy then rename, so a concurrent user never sees a half-written executable.
  install -m 755 "$tmp/build/bin/$tool" "$BIN/.$tool.tmp"
  mv -f "$BIN/.$tool.tmp" "$BIN/$tool"
done
installed || die "the freshly built $BIN/lmplz or $BIN/build_binary does not run"
say "installed $BIN/lmplz and $BIN/build_binary (KenLM $version, compiled in $((SECONDS - start)) s)"
