#!/usr/bin/env bash
# The kernel sources live in Sources/AttnKitKernels; every other kernel module
# (one per ISA tier) is a folder of symlinks to them. Run this after adding or
# removing a kernel file: it rebuilds every mirror folder exactly. The Swift
# test KernelMirrorTests fails when a mirror differs from the source folder.
set -euo pipefail
cd "$(dirname "$0")/../Sources"
for mirror in AttnKitKernelsPortable AttnKitKernelsAVX2 AttnKitKernelsBF16; do
  rm -rf "$mirror"
  mkdir "$mirror"
  for file in AttnKitKernels/*.swift; do
    ln -s "../$file" "$mirror/$(basename "$file")"
  done
done
