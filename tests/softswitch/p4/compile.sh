#!/bin/sh
# Recompile the softswitch test programs into tests/softswitch/p4/build/ (JSON + P4Info text), which is
# committed so that tests run without p4c. Usage: tests/softswitch/p4/compile.sh [p4c-bm2-ss [include dir]]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
p4c=${1:-p4c-bm2-ss}
include=${2:+-I $2}
mkdir -p "$here/build"
for src in "$here"/*.p4; do
    name=$(basename "$src" .p4)
    echo "compiling $name"
    # p4c 1.2.4 picks the P4Info format from the suffix and does not know .txtpb: write .txt, then rename.
    "$p4c" --arch v1model --std p4-16 $include --p4runtime-files "$here/build/$name.p4info.txt" \
        -o "$here/build/$name.json" "$src"
    mv "$here/build/$name.p4info.txt" "$here/build/$name.p4info.txtpb"
done
