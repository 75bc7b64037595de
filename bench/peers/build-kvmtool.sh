#!/usr/bin/env bash
# Builds kvmtool (lkvm) from a source tree you provide, for `tsvmm bench`'s
# serial-flood comparison. Nothing of kvmtool is part of tsvmm: the sources are
# copied to a scratch directory, patched there, built, and only the binary is
# kept in the cache:
#
#   $XDG_CACHE_HOME/tsvmm/peers/kvmtool/lkvm   (default ~/.cache/tsvmm/peers/...)
#
# Usage: bench/peers/build-kvmtool.sh SRC_DIR
#   SRC_DIR  a kvmtool checkout, e.g.
#            git clone https://git.kernel.org/pub/scm/linux/kernel/git/will/kvmtool.git
#            (or an exported tree: then KVMTOOL_VERSION=<commit> names it)
#
# The one local change: kvmtool refuses to start unless the host CPU reports
# VT-x or AMD-V (kvm__arch_cpu_supports_vm() looks at CPUID). PVM hosts run
# KVM without either, so the check is switched off in the scratch copy. The
# build fails loudly if kvmtool's code no longer has the line this expects.
set -euo pipefail

src="${1:-}"
if [ -z "$src" ] || [ ! -f "$src/kvm.c" ] || [ ! -d "$src/x86" ]; then
    echo "usage: $0 SRC_DIR   (a kvmtool source tree: it has kvm.c and x86/)" >&2
    exit 2
fi
for tool in make "${CC:-cc}"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: '$tool' not found (apt-get install build-essential)" >&2; exit 1; }
done

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tsvmm/peers/kvmtool"
work="$(mktemp -d "${TMPDIR:-/tmp}/tsvmm-kvmtool.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Copy the tree without its .git (the version is recorded separately).
tar -C "$src" --exclude=.git -cf - . | tar -C "$work" -xf -
version="${KVMTOOL_VERSION:-unknown}"
if [ -z "${KVMTOOL_VERSION:-}" ] && git -C "$src" rev-parse --short HEAD >/dev/null 2>&1; then
    version="$(git -C "$src" rev-parse --short HEAD)"
fi

# The vmx/svm check: `if (!kvm__arch_cpu_supports_vm()) {` in kvm__init().
check='if (!kvm__arch_cpu_supports_vm())'
if ! grep -qF "$check" "$work/kvm.c"; then
    echo "$0: kvm.c has no '$check': kvmtool changed, update this script" >&2
    exit 1
fi
sed -i "s/if (!kvm__arch_cpu_supports_vm())/if (0 \&\& !kvm__arch_cpu_supports_vm())/" "$work/kvm.c"

echo "building kvmtool $version in $work" >&2
make -C "$work" -j"$(nproc)" lkvm WERROR=0 >"$work/build.log" 2>&1 || {
    tail -n 30 "$work/build.log" >&2
    echo "$0: kvmtool build failed (full log above, last 30 lines)" >&2
    exit 1
}
mkdir -p "$cache"
install -m 0755 "$work/lkvm" "$cache/lkvm"
printf '%s\n' "$version" >"$cache/VERSION"
echo "$cache/lkvm"
