#!/usr/bin/env bash
# Runs every test: Swift unit tests, the C client against the installed library, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> swift test (release: the kernels as shipped), dispatched ISA and forced generic"
swift test -c release 2>&1 | grep -vE "^(Test Case|\[[0-9]+/[0-9]+\])"
ATTNKIT_ISA=generic swift test -c release 2>&1 | grep -vE "^(Test Case|\[[0-9]+/[0-9]+\])"

echo "==> cmake build and install to build/install"
cmake -S . -B build/cmake -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cmake
cmake --install build/cmake --prefix "$PWD/build/install" >/dev/null

echo "==> C client against the installed header and library (find_package and pkg-config)"
PKG_CONFIG_PATH="$PWD/build/install/lib/pkgconfig" \
  cmake -S Tests/c -B build/ctest -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/ctest
ctest --test-dir build/ctest --output-on-failure

echo "==> pytest (parity against torch), dispatched ISA, then the whole suite again with ATTNKIT_ISA=generic"
repo="$PWD"
cd /tmp
"$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/Tests/python" "$@"
ATTNKIT_ISA=generic "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/Tests/python" "$@"
