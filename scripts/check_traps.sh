#!/usr/bin/env bash
# No Swift runtime trap may be reachable from the C ABI. Lists every construct
# in the code the ABI reaches (AttnKitCore, AttnKit, AttnKitC and the kernel
# sources) that traps when its assumption fails (fatalError, precondition,
# assert, try!, as!, a force unwrap `x!`, unsafelyUnwrapped) and fails unless
# Tests/traps/allowed.txt lists it with the reason it cannot fire.
#
# What this does not list: array subscripts and checked arithmetic. In the
# validating layer (built with Swift's checks) they index and multiply shapes
# after their ranks and element counts are checked (validateLayout,
# requireRank, checkedProduct); a rule it missed traps there rather than
# corrupting memory, and the fuzz harnesses (Tests/fuzz) hunt for exactly that.
set -euo pipefail
cd "$(dirname "$0")/.."
allowed=Tests/traps/allowed.txt
pattern='fatalError|precondition|assert\(|assertionFailure|try!|as!|unsafelyUnwrapped|[A-Za-z0-9_)]!([^=]|$)|\]!([^=]|$)'
unexplained=0
while IFS= read -r hit; do
  file=${hit%%:*}; rest=${hit#*:}; code=${rest#*:}
  code="$(sed -E 's/^[[:space:]]+//; s/[[:space:]]+$//' <<< "$code")"
  [[ $code == //* ]] && continue   # a comment
  if ! grep -qF -- "$file|$code|" "$allowed"; then
    echo "unexplained trap site: $file: $code" >&2
    unexplained=$((unexplained + 1))
  fi
done < <(grep -rnE "$pattern" Sources/AttnKitCore Sources/AttnKit Sources/AttnKitC Sources/AttnKitKernels --include='*.swift')
listed=$(grep -vc '^#' "$allowed")
if (( unexplained > 0 )); then
  echo "check_traps: $unexplained trap sites are not explained in $allowed" >&2
  exit 1
fi
echo "check_traps: every trap site in the ABI's reach ($listed) is listed with why it cannot fire"
