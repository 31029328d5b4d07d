#!/usr/bin/env bash
# Soak: one publisher that hangs up and comes back every RESTART seconds,
# PLAYERS RTMP players that reconnect when their stream ends (as real players
# retry), for SECS seconds in all, against `arcly` with HLS packaging on.
# Samples the server's resident memory, open descriptors and threads every
# minute and prints them, then the first and last samples side by side.
#   bash tests/bench/soak.sh                      (30 min, 500 players, 5 min)
#   SECS=120 RESTART=30 PLAYERS=50 bash tests/bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v ffmpeg >/dev/null 2>&1 || { echo "soak: ffmpeg is missing (apt-get install -y ffmpeg)" >&2; exit 1; }
secs="${SECS:-1800}"
restart="${RESTART:-300}"
players="${PLAYERS:-500}"
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p arcly --bin arcly
ARCLY="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
work="${TMPDIR:-/tmp}/arcly-soak"
mkdir -p "$work"
in="$work/in-1mbps.flv"
[ -s "$in" ] || ffmpeg -v error -y -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -b:v 900k -maxrate 900k -bufsize 900k -g 30 -c:a aac -b:a 96k "$in"

pr=$(( 30000 + RANDOM % 10000 )); ph=$(( pr + 1 ))
"$ARCLY" --rtmp 127.0.0.1:$pr --http 127.0.0.1:$ph --log warn > "$work/arcly.log" 2>&1 &
arcly_pid=$!
cleanup() { kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
sleep 1
url="rtmp://127.0.0.1:$pr/live/soak"

# The publisher: RESTART seconds at a time, until the run is over.
(
  end=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -lt "$end" ]; do
    left=$(( end - $(date +%s) )); t=$(( left < restart ? left : restart ))
    ffmpeg -v error -re -stream_loop -1 -i "$in" -t "$t" -c copy -f flv "$url" || true
    echo "$(date +%T) publisher reconnects" >> "$work/publisher.log"
  done
) &
sleep 3

sample() {
  printf '%6s %8s %5s %7s\n' "$1" \
    "$(awk '/VmRSS/ {print $2}' /proc/$arcly_pid/status)" \
    "$(ls /proc/$arcly_pid/fd | wc -l)" \
    "$(awk '/Threads/ {print $2}' /proc/$arcly_pid/status)"
}
"$ARCLY" bench --url "$url" --players "$players" --ramp 100 --duration "$secs" --reconnect > "$work/bench.txt" &
bench=$!
echo "  time  RSS KiB   fds threads" | tee "$work/samples.txt"
t=0
while kill -0 $bench 2>/dev/null; do
  sleep 60; t=$(( t + 60 ))
  kill -0 $bench 2>/dev/null || break
  sample "${t}s" | tee -a "$work/samples.txt"
done
wait $bench
tail -1 "$work/bench.txt"
# After the players left and the last publisher hung up.
sleep 5
sample "after" | tee -a "$work/samples.txt"
first=$(sed -n 2p "$work/samples.txt"); last=$(tail -2 "$work/samples.txt" | head -1)
echo "first minute: $first"
echo "last minute:  $last"
