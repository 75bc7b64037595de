#!/usr/bin/env bash
# Build the C baseline runner: bench/c/build/kvm-flat. Runnable from any cwd.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CC="${CC:-cc}"
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "bench/c/build.sh: C compiler '$CC' not found (install gcc or clang, or set CC)" >&2
    exit 1
fi
mkdir -p "$here/build"
"$CC" -O2 -Wall -o "$here/build/kvm-flat" "$here/kvm-flat.c"
echo "built $here/build/kvm-flat"
