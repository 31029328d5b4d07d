#!/usr/bin/env bash
# SRT fan-out, side by side with libsrt on this machine, in one run.
# A 1 Mb/s H.264 + AAC stream is published over SRT into arcly, and N
# srt-live-transmit players read it from arcly; arcly's CPU time and resident
# memory are sampled over the same 20 s at each N. srt-live-transmit relays
# one publisher to one player only (its listener takes one caller), so the
# reference is the cost of one srt-live-transmit relay (listener in, listener
# out) carrying the same stream to one player: what N players cost with it is
# N such relays.
#   bash tests/bench/srt_fanout.sh [N...]   (default: 1 50 100 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in ffmpeg srt-live-transmit; do
  command -v "$tool" >/dev/null 2>&1 || { echo "srt_fanout: $tool is missing (apt-get install -y ffmpeg srt-tools)" >&2; exit 1; }
done
steps=("${@:-1 50 100 200}")
steps=(${steps[@]})
secs=20
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p arcly --bin arcly
ARCLY="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
work="${TMPDIR:-/tmp}/arcly-srt-fanout"
mkdir -p "$work"
in="$work/in-1mbps.ts"
[ -s "$in" ] || ffmpeg -v error -y -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -b:v 900k -maxrate 900k -bufsize 900k -g 30 -c:a aac -b:a 96k -f mpegts "$in"
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

publish() { # URL
  ffmpeg -v error -stream_loop -1 -re -i "$in" -c copy -f mpegts "$1" &
  pids+=($!)
}

# Measures PID's CPU (% of one core) and RSS over $secs.
measure() {
  local pid=$1 t0 t1
  t0=$(cpu_ticks "$pid")
  sleep "$secs"
  t1=$(cpu_ticks "$pid")
  echo "$(awk -v d=$(( t1 - t0 )) -v t="$tck" -v s="$secs" 'BEGIN { printf "%.1f", d * 100 / t / s }') $(rss_kib "$pid")"
}

port=$(( 30000 + RANDOM % 10000 ))
"$ARCLY" --srt 127.0.0.1:$port --rtmp off --http off --log warn &
arcly_pid=$!
pids+=($arcly_pid)
sleep 0.5
base_rss=$(rss_kib "$arcly_pid")
publish "srt://127.0.0.1:$port?streamid=publish:live/bench&latency=120000"
sleep 3
echo "srt_fanout: arcly, one 1 Mb/s publisher, N srt-live-transmit players, ${secs} s per step"
echo "players  cpu%  rss_MiB  cpu%/player  KiB/player"
have=0
for n in "${steps[@]}"; do
  while [ "$have" -lt "$n" ]; do
    srt-live-transmit -q "srt://127.0.0.1:$port?streamid=read:live/bench" file://con >/dev/null 2>&1 &
    pids+=($!)
    have=$((have + 1))
  done
  sleep 2
  read -r cpu rss < <(measure "$arcly_pid")
  echo "$n $cpu $(( rss / 1024 )) $(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.2f", c / n }') $(( (rss - base_rss) / n ))"
done
cleanup
pids=()

# The reference: one srt-live-transmit relay, one publisher, one player.
a=$(( port + 1 )); b=$(( port + 2 ))
srt-live-transmit -q "srt://127.0.0.1:$a?mode=listener&latency=120" "srt://127.0.0.1:$b?mode=listener&latency=120" >/dev/null 2>&1 &
relay=$!
pids+=($relay)
sleep 0.3
srt-live-transmit -q "srt://127.0.0.1:$b" file://con >/dev/null 2>&1 &
pids+=($!)
sleep 0.3
publish "srt://127.0.0.1:$a?latency=120000"
sleep 3
read -r cpu rss < <(measure "$relay")
echo "srt-live-transmit relay, 1 publisher -> 1 player: cpu% $cpu, rss $(( rss / 1024 )) MiB (N players: N relays)"
