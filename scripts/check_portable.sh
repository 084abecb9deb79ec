#!/usr/bin/env bash
# Compile-only checks for arm64 (we have no arm64 machine; nothing here runs):
#  1. the C shims and include/attnkit.h through clang for aarch64-linux-gnu
#     (headers from Debian's libc6-dev-arm64-cross), -fsyntax-only;
#  2. the Swift modules an arm64 build compiles (AttnKitCore, the portable
#     kernels, AttnKit and the C ABI layer), compiled here on x86-64 exactly
#     as arm64 sees them: ATTNKIT_X86 unset, the shims' x86 part switched off
#     (so <immintrin.h> and <cpuid.h> are never included), and a check that no
#     module imports _Builtin_intrinsics (the x86 intrinsics).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/build/portable-check"
rm -rf "$out"
mkdir -p "$out"

echo "--- clang --target=aarch64-linux-gnu -fsyntax-only: attnkit_shims.h, attnkit.h"
sysroot=/usr/aarch64-linux-gnu
for header in Sources/_AttnKitShims/include/attnkit_shims.h include/attnkit.h; do
  clang --target=aarch64-linux-gnu -isystem "$sysroot/include" -fsyntax-only -Werror -x c "$header"
done
printf '#include "attnkit.h"\nint main(void) { int32_t isa; return attn_get_isa(&isa); }\n' > "$out/client.c"
clang --target=aarch64-linux-gnu -isystem "$sysroot/include" -Iinclude -fsyntax-only -Werror "$out/client.c"

echo "--- swiftc: the portable build's modules without ATTNKIT_X86 or x86 intrinsics"
cat > "$out/module.modulemap" <<MAP
module _AttnKitShims { header "$PWD/Sources/_AttnKitShims/include/attnkit_shims.h"
  export * }
module COpenBLAS { header "$PWD/Sources/COpenBLAS/openblas_shim.h"
  export * }
module CAttnKitABI { header "$PWD/include/attnkit.h"
  export * }
MAP
common=(-parse-as-library -package-name attnkit -O -wmo -I "$out" -Xcc "-fmodule-map-file=$out/module.modulemap"
        -Xcc -DATTNKIT_SHIMS_PORTABLE_ONLY -swift-version 5)
module() {
  local name=$1; shift
  swiftc "${common[@]}" -module-name "$name" -emit-module -emit-module-path "$out/$name.swiftmodule" \
    -c -o "$out/$name.o" "$@"
  swiftc -emit-imported-modules "${common[@]}" "$@" > "$out/$name.imports"
  if grep -q '_Builtin_intrinsics' "$out/$name.imports"; then
    echo "portable check: $name loads _Builtin_intrinsics (x86 intrinsics leak into the arm64 build)" >&2
    exit 1
  fi
}
module AttnKitCore Sources/AttnKitCore/*.swift
module AttnKitKernelsPortable Sources/AttnKitKernelsPortable/*.swift
module AttnKit Sources/AttnKit/*.swift
module AttnKitC Sources/AttnKitC/*.swift
echo "imports: $(cat "$out"/*.imports | sort -u | tr '\n' ' ')"
echo "portable check: passed (aarch64 headers; AttnKitCore, AttnKitKernelsPortable, AttnKit, AttnKitC without x86 code)"
