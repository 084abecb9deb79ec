#!/usr/bin/env bash
# Runs every test: Swift unit tests, the C client against the installed library,
# pytest, and the arm64 compile-only check, once per kernel tier this CPU can run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The tiers this CPU can run, as the library itself reports them (CPUID + XGETBV).
read -r -a tiers <<< "$(cd /tmp && "$OLDPWD/.venv/bin/python" -c 'import attnkit; print(" ".join(attnkit.available_isas()))')"
all_tiers=(generic avx2 avx512 avx512_bf16)
skipped=()
for tier in "${all_tiers[@]}"; do
  [[ " ${tiers[*]} " == *" $tier "* ]] || skipped+=("$tier")
done
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "==> CPU: $cpu; kernel tiers to test: ${tiers[*]}; not on this CPU: ${skipped[*]:-none}"

echo "==> swift test (release: the kernels as shipped), once per tier"
for isa in "${tiers[@]}"; do
  echo "--- ATTNKIT_ISA=$isa"
  ATTNKIT_ISA=$isa swift test -c release 2>&1 | grep -vE "^(Test Case|\[[0-9]+/[0-9]+\])"
done

echo "==> cmake build and install to build/install"
cmake -S . -B build/cmake -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cmake
cmake --install build/cmake --prefix "$PWD/build/install" >/dev/null
# Each kernel tier must keep its own copies of shared generic specializations
# (cmake/LocalizeKernelTier.cmake): no weak symbol may be left in a tier archive.
for archive in build/cmake/libAttnKitKernels*.a; do
  if nm --defined-only "$archive" | grep -q ' [WV] '; then
    echo "tier isolation: $archive still defines weak symbols that other tiers' code could bind to" >&2
    nm --defined-only "$archive" | grep ' [WV] ' | head >&2
    exit 1
  fi
done
echo "tier isolation: every kernel tier archive keeps its generic specializations local"

echo "==> C client against the installed header and library (find_package and pkg-config), once per tier"
PKG_CONFIG_PATH="$PWD/build/install/lib/pkgconfig" \
  cmake -S Tests/c -B build/ctest -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/ctest
for isa in "${tiers[@]}"; do
  echo "--- ATTNKIT_ISA=$isa"
  ATTNKIT_ISA=$isa ctest --test-dir build/ctest --output-on-failure
done

if [[ " ${tiers[*]} " == *" avx2 "* ]]; then
  echo "==> the AVX2 tier's AVX-VNNI int8 tile against its scalar twin (emulated vpdpbusd, then native where the CPU has it)"
  mkdir -p build/shims
  for mode in -DATTNKIT_EMULATE_VNNI -UATTNKIT_EMULATE_VNNI; do
    clang -O2 -mavx2 "$mode" -ISources/_AttnKitShims/include Tests/shims/avxvnni_tile.c -o build/shims/avxvnni_tile
    build/shims/avxvnni_tile
  done
fi

echo "==> fuzz harnesses (Tests/fuzz): a fixed number of runs each over the committed seeds, against the release library"
bash scripts/fuzz.sh smoke

echo "==> no unexplained Swift trap sites in the code the C ABI reaches"
bash scripts/check_traps.sh

echo "==> sanitizers: the library built with ASan (catalogue, client, fork test, fuzz smoke runs) and TSan (stress)"
ATTNKIT_SKIP_SETUP=1 bash scripts/sanitize.sh

echo "==> ABI: the public header against the 0.1 baseline (abidiff)"
bash scripts/check_abi.sh

echo "==> arm64 compile-only check (nothing is run for arm64)"
bash scripts/check_portable.sh

echo "==> pytest (parity against torch), once per tier"
repo="$PWD"
cd /tmp
for isa in "${tiers[@]}"; do
  echo "--- ATTNKIT_ISA=$isa"
  ATTNKIT_ISA=$isa "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/Tests/python" "$@"
done
if [[ " ${tiers[*]} " == *" avx512 "* ]]; then
  echo "--- int8 paths with P·V kept in fp32 (ATTNKIT_INT8_PV=fp32; the default is fp16 on AVX512_FP16 CPUs)"
  ATTNKIT_INT8_PV=fp32 "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/Tests/python/test_int8.py" "$@"
fi
echo "==> kernel tiers tested: ${tiers[*]}; skipped (CPU lacks them): ${skipped[*]:-none}"
