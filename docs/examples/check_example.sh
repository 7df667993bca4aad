#!/bin/sh
# ctest's book_NN: runs a chapter's example program and requires its output to be, byte
# for byte, the block the chapter prints under "<!-- output of NAME -->" (the next
# fenced block). Also every repo path the chapter names in backticks must exist, and
# any file the program writes into OUT_DIR must equal the committed copy under docs/book/.
#   check_example.sh SOURCE_DIR CHAPTER NAME OUT_DIR PROGRAM
set -eu
source_dir=$1 chapter=$source_dir/$2 name=$3 out_dir=$4 program=$5
expected=$(mktemp) actual=$(mktemp)
trap 'rm -f "$expected" "$actual"' EXIT
awk -v marker="<!-- output of $name -->" '
  $0 == marker { found = 1; next }
  found == 1 && /^```/ { found = 2; next }
  found == 2 && /^```/ { exit }
  found == 2 { print }' "$chapter" > "$expected"
if [ ! -s "$expected" ]; then
  echo "$2: no output block after <!-- output of $name -->" >&2
  exit 1
fi
mkdir -p "$out_dir"
(cd "$out_dir" && "$program") > "$actual"
if ! cmp -s "$expected" "$actual"; then
  echo "$2: the output printed in the chapter differs from what $name prints today:" >&2
  diff -u "$expected" "$actual" >&2 || true
  exit 1
fi
for written in "$out_dir"/*.svg; do
  [ -e "$written" ] || continue
  committed=$source_dir/docs/book/$(basename "$written")
  if ! cmp -s "$written" "$committed"; then
    echo "$2: $name wrote $(basename "$written"), which differs from the committed $committed" >&2
    exit 1
  fi
done
missing=0
for path in $(grep -o '`[A-Za-z0-9_./-]*\.\(h\|cpp\|md\|json\|sh\)`' "$chapter" | tr -d '`' | sort -u); do
  if [ ! -e "$source_dir/$path" ]; then
    echo "$2: names $path, which does not exist" >&2
    missing=1
  fi
done
exit $missing
