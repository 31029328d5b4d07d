#!/usr/bin/env bash
# Whole-process comparison of `arcly remux` and `ffmpeg -c copy` on a 60 s
# 1080p H.264 + AAC FLV: throughput (hyperfine) and peak memory
# (/usr/bin/time -v). Needs ffmpeg, hyperfine and GNU time.
#   bash tests/bench/remux.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in ffmpeg hyperfine /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || { echo "remux bench: $tool is missing (apt-get install -y ffmpeg hyperfine time)" >&2; exit 1; }
done
cargo build --release -p arcly --bin arcly
ARCLY="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
work="${TMPDIR:-/tmp}/arcly-remux-bench"
mkdir -p "$work"
in="$work/in-1080p-60s.flv"
if [ ! -s "$in" ]; then
  ffmpeg -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 60 -c:v libx264 -preset ultrafast -b:v 6M -g 60 -c:a aac -b:a 128k "$in"
fi
ls -l "$in"
for ext in ts mp4; do
  hyperfine --warmup 2 --runs 10 --export-markdown "$work/remux-$ext.md" \
    -n "arcly remux (flv to $ext)" "$ARCLY remux $in $work/arcly.$ext" \
    -n "ffmpeg -c copy (flv to $ext)" "ffmpeg -v error -y -i $in -c copy $work/ffmpeg.$ext"
  for who in arcly ffmpeg; do
    if [ $who = arcly ]; then cmd=("$ARCLY" remux "$in" "$work/arcly.$ext"); else cmd=(ffmpeg -v error -y -i "$in" -c copy "$work/ffmpeg.$ext"); fi
    peak=$(/usr/bin/time -v "${cmd[@]}" 2>&1 >/dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
    echo "peak RSS $who flv->$ext: ${peak} KiB"
  done
done
