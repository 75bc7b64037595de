#!/usr/bin/env bash
# Build every firmware/*.S into firmware/build/<name>.elf (with symbols, for
# objdump/gdb) and firmware/build/<name>.bin (the flat image a VMM loads at
# 0x10000), and every firmware/multiboot/*.S into firmware/build/<name>.elf (a
# multiboot kernel). Uses only binutils: as, ld, objcopy. Runnable from any directory;
# rebuilding is always safe (outputs are simply overwritten).
set -euo pipefail

self="${BASH_SOURCE[0]}"
[[ "$self" == */* ]] && here="${self%/*}" || here=.
here="$(cd "$here" && pwd)"
out="$here/build"

AS="${AS:-as}"
LD="${LD:-ld}"
OBJCOPY="${OBJCOPY:-objcopy}"

missing=()
for tool in "$AS" "$LD" "$OBJCOPY"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "firmware/build.sh: missing ${missing[*]} — install GNU binutils (e.g. 'apt-get install binutils')" >&2
    exit 1
fi

shopt -s nullglob
sources=("$here"/*.S)
if ((${#sources[@]} == 0)); then
    echo "firmware/build.sh: no .S files in $here" >&2
    exit 1
fi

mkdir -p "$out"
for src in "${sources[@]}"; do
    name="${src##*/}"
    name="${name%.S}"
    # --64: a 64-bit ELF object; each source switches to .code16 / .code64 itself.
    # --fatal-warnings: a truncated immediate or similar is a bug, not a warning.
    "$AS" --64 --fatal-warnings --noexecstack -I "$here/include" -o "$out/$name.o" "$src"
    "$LD" -m elf_x86_64 -nostdlib -T "$here/flat.ld" -o "$out/$name.elf" "$out/$name.o"
    "$OBJCOPY" -O binary "$out/$name.elf" "$out/$name.bin"
    rm -f "$out/$name.o"
    printf '  %-14s %6d bytes\n' "$name.bin" "$(stat -c %s "$out/$name.bin")"
done

# Multiboot v1 kernels: 32-bit ELF files linked at 0x400000 (multiboot.ld), or
# by their own <name>.ld beside them, which a VMM loads by their program
# headers (tsvmm run -k firmware/build/<name>.elf).
for src in "$here"/multiboot/*.S; do
    name="${src##*/}"
    name="${name%.S}"
    script="$here/multiboot/$name.ld"
    [[ -f "$script" ]] || script="$here/multiboot/multiboot.ld"
    "$AS" --32 --fatal-warnings --noexecstack -I "$here/include" -o "$out/$name.o" "$src"
    "$LD" -m elf_i386 -nostdlib -z max-page-size=0x1000 --no-warn-rwx-segments -T "$script" -o "$out/$name.elf" "$out/$name.o"
    rm -f "$out/$name.o"
    printf '  %-14s %6d bytes\n' "$name.elf" "$(stat -c %s "$out/$name.elf")"
done
