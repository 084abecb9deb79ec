#!/usr/bin/env bash
# Installs everything attnkit needs on a fresh machine (idempotent):
# Debian packages, a venv in .venv with torch (CPU) and the test tools, and attnkit itself.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev pybind11-dev cmake ninja-build pkg-config g++ libc6-dev-arm64-cross abigail-tools)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
# torch must be the +cpu build: plain "torch" pulls in gigabytes of CUDA.
# transformers, matplotlib and mypy are for the tests (the transformers backend, plots, typed stubs).
if ! .venv/bin/python -c "import torch, numpy, pytest, scikit_build_core, pybind11, transformers, matplotlib, mypy" 2>/dev/null; then
  echo "==> pip install torch (cpu), numpy, pytest, scikit-build-core, pybind11, transformers, matplotlib, mypy"
  .venv/bin/pip install -q "torch==2.13.0+cpu" numpy pytest "scikit-build-core>=0.10" "pybind11>=2.12" \
    "transformers>=5" matplotlib mypy
fi

# Rebuild only when what the package is built from changed since the last install:
# a stamp in .venv holds the hash of those files' contents and names.
build_inputs=(Package.swift CMakeLists.txt pyproject.toml cmake include Sources bindings)
tree_hash="$(find "${build_inputs[@]}" -type f -not -path "*/__pycache__/*" -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
stamp=.venv/.attnkit-build-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$tree_hash" ] && (repo="$PWD"; cd /tmp && "$repo/.venv/bin/python" -c "import attnkit" 2>/dev/null); then
  echo "==> attnkit is installed from these sources already (stamp $stamp); not rebuilding"
else
  echo "==> pip install . (builds the Swift core, libattnkit.so and the pybind11 module)"
  rm -f "$stamp"
  .venv/bin/pip install -q --no-build-isolation .
  echo "$tree_hash" > "$stamp"
fi
