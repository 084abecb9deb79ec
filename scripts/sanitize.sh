#!/usr/bin/env bash
# Sanitizer runs of the library itself (not just a harness), through the CMake
# build so each kernel tier keeps its own code (cmake/LocalizeKernelTier.cmake):
#   address (Swift; Swift has no UBSan on Linux) with address,undefined on the C
#   side: the bad-call catalogue, the C client, the fork test and the fuzz
#   harnesses' smoke runs (scripts/fuzz.sh);
#   thread:            the 8-thread stress test (bitwise against one thread).
# Not part of the test command (two extra builds of the whole library); run it
# by hand: bash scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[[ ${ATTNKIT_SKIP_SETUP:-0} == 1 ]] || bash scripts/setup.sh >/dev/null   # test.sh has already run it
run() {   # run <name> <swift sanitizers> <clang sanitizers> <programs...>
  local name=$1 swift_flags=$2 c_flags=$3; shift 3
  local build="build/sanitize-$name"
  echo "==> $name: building the library with -sanitize=$swift_flags"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_Swift_FLAGS="-sanitize=$swift_flags" \
    -DCMAKE_C_FLAGS="-fsanitize=$c_flags" >/dev/null
  cmake --build "$build" >/dev/null
  # The toolchain's TSan runtime intercepts libdispatch, so it needs the Swift toolchain's libdispatch.
  local swift_lib
  swift_lib="$(dirname "$(command -v swiftc)")/../lib/swift/linux"
  local extra=()
  [[ "$c_flags" == *thread* ]] && extra=(-L"$swift_lib" -ldispatch -Wl,-rpath,"$swift_lib")
  for program in "$@"; do
    clang -O1 -g -fsanitize="$c_flags" -shared-libsan -Iinclude "Tests/c/$program.c" -o "$build/$program" \
      -L"$build" -lattnkit -Wl,-rpath,"$PWD/$build" -Wl,-rpath,"$(clang -print-resource-dir)/lib/linux" \
      "${extra[@]}" -lm -lpthread
    echo "--- $name: $program"
    "$build/$program"
  done
}
run address-undefined address address,undefined catalogue client fork_first_call
echo "--- address-undefined: fuzz smoke runs against the ASan build of the library"
bash scripts/fuzz.sh smoke build/sanitize-address-undefined
run thread thread thread stress
echo "sanitize: all runs clean"
