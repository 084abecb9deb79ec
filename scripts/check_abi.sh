#!/usr/bin/env bash
# ABI stability: the public header's types, signatures and codes against the
# 0.1 baseline (Tests/abi/attnkit-0.1.abi, abidw of Tests/abi/abi_probe.c built
# against the 0.1 header), plus the library's exported symbols (ctest
# exported_symbol_list). Fails on any incompatible change to what 0.1 had;
# additions are allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/abi
mkdir -p "$out"
clang -g -shared -fPIC -Iinclude Tests/abi/abi_probe.c -o "$out/probe.so"
abidw --no-corpus-path --no-comp-dir-path "$out/probe.so" > "$out/current.abi"
set +e
abidiff Tests/abi/attnkit-0.1.abi "$out/current.abi" > "$out/report.txt"
status=$?
set -e
# abidiff's exit code is a bit field: 1 error, 2 usage, 4 ABI change, 8 incompatible change.
if (( status & 3 )); then
  cat "$out/report.txt"; echo "check_abi: abidiff failed to run (exit $status)" >&2; exit 1
fi
if (( status & 8 )); then
  cat "$out/report.txt"; echo "check_abi: incompatible change to the 0.1 ABI" >&2; exit 1
fi
if (( status & 4 )); then
  cat "$out/report.txt"
  # Only additions may change: anything abidiff lists as changed or removed fails.
  if grep -qE "[1-9][0-9]* (Removed|Changed)" "$out/report.txt"; then
    echo "check_abi: the 0.1 ABI changed (see above)" >&2; exit 1
  fi
fi
echo "check_abi: the public header keeps the 0.1 ABI (abidiff exit $status)"
