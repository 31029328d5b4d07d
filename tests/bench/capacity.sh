#!/usr/bin/env bash
# Side-by-side capacity of arcly and nginx-rtmp on this machine, in one run:
# the same 1 Mb/s H.264 + AAC stream is published into each, then `arcly
# bench` ramps RTMP players against each. A step is "held" when every player
# joined, none stalled or failed, and the delivered rate is at least 90 % of
# players x stream rate. Reports CPU use and resident memory per player.
#   bash tests/bench/capacity.sh [STEPS...]      (default: 100 200 400 800 1600)
#   SERVERS=nginx bash tests/bench/capacity.sh   (one server only)
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in ffmpeg nginx; do
  command -v "$tool" >/dev/null 2>&1 || { echo "capacity: $tool is missing (apt-get install -y ffmpeg nginx libnginx-mod-rtmp)" >&2; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "capacity: libnginx-mod-rtmp is missing" >&2; exit 1; }
steps=("${@:-100 200 400 800 1600}")
steps=(${steps[@]})
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p arcly-tokio --bin arcly
ARCLY="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
work="${TMPDIR:-/tmp}/arcly-capacity"
mkdir -p "$work/nginx/logs"
in="$work/in-1mbps.flv"
[ -s "$in" ] || ffmpeg -v error -y -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -b:v 900k -maxrate 900k -bufsize 900k -g 30 -c:a aac -b:a 96k "$in"
rate_kbps=1000

pa=$(( 20000 + RANDOM % 10000 )); pn=$(( pa + 1 ))
"$ARCLY" --rtmp 127.0.0.1:$pa --http off --log warn &
arcly_pid=$!
cat > "$work/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
# One worker: nginx-rtmp's live mode shares a stream only within a worker
# (rtmp_auto_push relays between workers, but players joining other workers
# failed here with it on).
worker_processes 1;
daemon off;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 20000; }
rtmp { server { listen 127.0.0.1:$pn; chunk_size 4096; application live { live on; } } }
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
cleanup() { kill $arcly_pid $nginx_pid 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
sleep 1

# CPU ticks (user+system) and RSS (KiB) of a server: arcly's process, or
# nginx's master and workers together.
pids_of() { if [ "$1" = arcly ]; then echo $arcly_pid; else echo $nginx_pid $(pgrep -P $nginx_pid); fi; }
ticks() { local t=0; for p in $(pids_of "$1"); do t=$(( t + $(awk '{print $14+$15}' /proc/$p/stat) )); done; echo $t; }
rss() { local r=0; for p in $(pids_of "$1"); do r=$(( r + $(awk '/VmRSS/ {print $2}' /proc/$p/status) )); done; echo $r; }
hz=$(getconf CLK_TCK)

printf '| server | players | held | delivered Mb/s | CPU %% (of 200) | RSS MiB | RSS per player KiB |\n|---|---:|---|---:|---:|---:|---:|\n' > "$work/table.md"
for server in ${SERVERS:-arcly nginx}; do
  port=$pa; [ $server = nginx ] && port=$pn
  url="rtmp://127.0.0.1:$port/live/cap"
  ffmpeg -v error -re -stream_loop -1 -i "$in" -c copy -f flv "$url" &
  pub=$!
  # The base memory is taken once the stream's buffers are full (arcly's
  # ring holds 1,024 frames: 13 s of this stream), so that it is not
  # counted against the players.
  sleep 16
  base=$(rss $server)
  for n in "${steps[@]}"; do
    t0=$(ticks $server)
    out=$("$ARCLY" bench --url "$url" --players "$n" --ramp 500 --duration 12)
    echo "$out" > "$work/bench-$server-$n.txt"
    t1=$(ticks $server)
    peak=$(rss $server)
    summary=$(echo "$out" | tail -1)
    joined=$(echo "$summary" | sed -E 's/.*joined ([0-9]+).*/\1/')
    stalls=$(echo "$summary" | sed -E 's/.*stalls ([0-9]+).*/\1/')
    errors=$(echo "$summary" | sed -E 's/.*errors ([0-9]+).*/\1/')
    # The delivered rate over the last 5 seconds, when all players run.
    mbps=$(echo "$out" | grep -E '^t=' | tail -5 | sed -E 's/.* ([0-9.]+) Mbit\/s.*/\1/' | awk '{s+=$1} END {printf "%.1f", s/NR}')
    need=$(awk -v n=$n -v r=$rate_kbps 'BEGIN {printf "%.1f", 0.9*n*r/1000}')
    held=no
    if [ "$joined" = "$n" ] && [ "$stalls" = 0 ] && [ "$errors" = 0 ] && awk -v a=$mbps -v b=$need 'BEGIN {exit !(a>=b)}'; then held=yes; fi
    cpu=$(awk -v d=$(( t1 - t0 )) -v hz=$hz 'BEGIN {printf "%.0f", 100*d/hz/12}')
    per=$(( (peak - base) / n ))
    printf '| %s | %d | %s | %s | %s | %d | %d |\n' $server $n $held $mbps $cpu $(( peak / 1024 )) $per | tee -a "$work/table.md"
    [ $held = yes ] || break
  done
  kill $pub 2>/dev/null || true
  wait $pub 2>/dev/null || true
done
echo
cat "$work/table.md"
