#!/usr/bin/env bash
# Installs everything attnkit needs on a fresh machine (idempotent):
# Debian packages, a venv in .venv with torch (CPU) and the test tools, and attnkit itself.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev pybind11-dev cmake ninja-build pkg-config libc6-dev-arm64-cross abigail-tools)
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
if ! .venv/bin/python -c "import torch, numpy, pytest, scikit_build_core, pybind11" 2>/dev/null; then
  echo "==> pip install torch (cpu), numpy, pytest, scikit-build-core, pybind11"
  .venv/bin/pip install -q "torch==2.13.0+cpu" numpy pytest "scikit-build-core>=0.10" "pybind11>=2.12"
fi

echo "==> pip install . (builds the Swift core, libattnkit.so and the pybind11 module)"
.venv/bin/pip install -q --no-build-isolation .
