#!/usr/bin/env bash
# libFuzzer harnesses (Tests/fuzz), one per entry family, against libattnkit.so.
#
#   bash scripts/fuzz.sh smoke [LIBDIR]      each harness for a fixed number of runs over
#                                            its committed seed corpus (the test command)
#   bash scripts/fuzz.sh run SECONDS [LIBDIR] each harness for SECONDS, new inputs kept in
#                                            build/fuzz/corpus-<name>; prints execs/s
#
# LIBDIR holds libattnkit.so (default: build/install/lib, the CMake install
# scripts/test.sh makes). scripts/sanitize.sh passes its ASan build of the
# library instead, so the library's own memory accesses are checked too.
# Harnesses are built with -fsanitize=fuzzer,address,undefined. A violated
# oracle (see Tests/fuzz/fuzz_common.h) aborts with the input saved as
# build/fuzz/crash-<hash>; rerun it with build/fuzz/<name> <file>.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
if [[ $mode == run ]]; then seconds=${2:?"usage: fuzz.sh run SECONDS [LIBDIR]"}; libdir=${3:-build/install/lib}
else libdir=${2:-build/install/lib}; fi
libdir="$(cd "$libdir" && pwd)"
runs=${ATTNKIT_FUZZ_RUNS:-3000}
out=build/fuzz
mkdir -p "$out"

harnesses=(eager sdpa flash varlen int8 quantize kvcache backward variants)
source_of() { case $1 in varlen) echo "fuzz_flash.c -DFZ_VARLEN";; *) echo "fuzz_$1.c";; esac; }

for name in "${harnesses[@]}"; do
  read -r source define <<< "$(source_of "$name")"
  clang -g -O1 ${define:-} -Wall -Werror -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude "Tests/fuzz/$source" -o "$out/$name" -L"$libdir" -lattnkit -Wl,-rpath,"$libdir" -lm \
    2> >(grep -v "Cannot export local symbol" >&2)
done

# Big enough for every decision a harness makes; tensor values come from a PRNG seeded by the input.
# A call that takes 20 s (a hang) or allocates 1 GiB at once (a size bounded by a
# dimension that multiplies zero) fails as a crash would.
options=(-max_len=160 -len_control=0 -print_final_stats=1 -timeout=20 -malloc_limit_mb=1024 -artifact_prefix="$out/")
for name in "${harnesses[@]}"; do
  seeds="Tests/fuzz/corpus/$name"
  work="$out/corpus-$name"
  mkdir -p "$work"
  if [[ $mode == run ]]; then
    echo "==> fuzz $name for ${seconds}s"
    ASAN_OPTIONS=detect_leaks=1 "$out/$name" "${options[@]}" -max_total_time="$seconds" "$work" "$seeds" 2>&1 |
      grep -E "^(stat::|#[0-9]+ +DONE)|ERROR|oracle" | sed "s/^/  $name: /"
  else
    # smoke: a fixed count from the seeds, in a scratch corpus the next run starts empty
    rm -rf "$work"; mkdir -p "$work"
    log="$out/$name.log"
    if ! ASAN_OPTIONS=detect_leaks=1 "$out/$name" "${options[@]}" -runs="$runs" -seed=1 "$work" "$seeds" > "$log" 2>&1; then
      tail -40 "$log" >&2
      echo "fuzz $name: FAILED (log: $log)" >&2
      exit 1
    fi
    execs=$(grep -m1 "stat::number_of_executed_units" "$log" | awk '{print $2}')
    speed=$(grep -m1 "stat::average_exec_per_sec" "$log" | awk '{print $2}')
    echo "fuzz $name: $execs executions, $speed exec/s, no oracle violated"
  fi
done
