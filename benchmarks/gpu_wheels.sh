#!/usr/bin/env bash
# Wheels of what the lent GPU machine lacks, into .whl/ (git-ignored), for gpu_check.sh's device run.
#
#   benchmarks/gpu_wheels.sh            # run here, in the checkout the device tool sends, before the call
#
# That machine has python3 (3.12) with torch and most of our dependencies but not diffusers, lightgbm or
# importlib_metadata (/work/.library/device/KINDS.md, "Python packages already there"), and it reaches
# no registry. This downloads, without their dependencies, the versions this checkout's Python has of
# those packages and of the few of their requirements whose version there is unknown (zipp, narwhals)
# or absent (lazy-importer), for CPython 3.12 on x86-64 Linux. The device call then names .whl in
# `carry` and installs them with --no-index --no-deps --target /tmp/site (see gpu_check.sh's header).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PACKAGES=(diffusers importlib_metadata lazy-importer zipp lightgbm narwhals)

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
mkdir -p .whl

pins=()
for name in "${PACKAGES[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") \
    || { echo "gpu_wheels.sh: $name is not installed for $PY; install the project first" >&2; exit 2; }
  pins+=("$name==$version")
done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${pins[@]}"
ls -l .whl
du -sh .whl
