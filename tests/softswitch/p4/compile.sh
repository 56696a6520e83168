#!/bin/sh
# Recompile the softswitch test programs into tests/softswitch/p4/build/ (JSON + P4Info text), which is
# committed so that tests run without p4c.
# Usage: tests/softswitch/p4/compile.sh [-p p4c-bm2-ss] [-I include dir] [NAME ...]   (no NAME: every program)
# Sources are compiled from this directory by relative name, so the JSON's source_info does not depend on
# where the checkout lies.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
p4c=p4c-bm2-ss
include=
while getopts p:I: opt; do
    case $opt in
        p) p4c=$OPTARG ;;
        I) include="-I $OPTARG" ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
cd "$here"
mkdir -p build
if [ $# -eq 0 ]; then
    set -- $(for src in *.p4; do basename "$src" .p4; done)
fi
for name in "$@"; do
    echo "compiling $name"
    # p4c 1.2.4 picks the P4Info format from the suffix and does not know .txtpb: write .txt, then rename.
    "$p4c" --arch v1model --std p4-16 $include --p4runtime-files "build/$name.p4info.txt" \
        -o "build/$name.json" "$name.p4"
    mv "build/$name.p4info.txt" "build/$name.p4info.txtpb"
done
