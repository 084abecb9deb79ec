#!/usr/bin/env bash
# Runs every test: Swift unit tests, the C client against the installed library, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> swift test (release: the kernels as shipped), dispatched ISA and forced generic"
for isa in default avx512_bf16 generic; do
  echo "--- ATTNKIT_ISA=$isa"
  ATTNKIT_ISA=$isa swift test -c release 2>&1 | grep -vE "^(Test Case|\[[0-9]+/[0-9]+\])"
done

echo "==> cmake build and install to build/install"
cmake -S . -B build/cmake -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cmake
cmake --install build/cmake --prefix "$PWD/build/install" >/dev/null

echo "==> C client against the installed header and library (find_package and pkg-config)"
PKG_CONFIG_PATH="$PWD/build/install/lib/pkgconfig" \
  cmake -S Tests/c -B build/ctest -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/ctest
ctest --test-dir build/ctest --output-on-failure

echo "==> pytest (parity against torch), once per kernel build: dispatched, AVX512_BF16 (opt-in), generic"
repo="$PWD"
cd /tmp
for isa in default avx512_bf16 generic; do
  echo "--- ATTNKIT_ISA=$isa"
  ATTNKIT_ISA=$isa "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/Tests/python" "$@"
done
echo "--- int8 paths with P·V kept in fp32 (ATTNKIT_INT8_PV=fp32; the default is fp16 on AVX512_FP16 CPUs)"
ATTNKIT_INT8_PV=fp32 "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/Tests/python/test_int8.py" "$@"
