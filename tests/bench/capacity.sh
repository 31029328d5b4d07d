#!/usr/bin/env bash
# Side-by-side capacity of arcly, nginx-rtmp and node-media-server (2.7.4,
# from npm, the Node.js RTMP/HTTP-FLV server) on this machine, in one run:
# the same 1 Mb/s H.264 + AAC stream is published into each, then `arcly
# bench` ramps RTMP players against each. A step is "held" when every player
# joined, none stalled or failed, and the delivered rate is at least 90 % of
# players x stream rate. Reports CPU use and resident memory per player.
# Then HTTP-FLV players (`GET /live/cap.flv`) against arcly and
# node-media-server, the two that serve it (nginx-rtmp does not).
# Then the same for HLS clients: a second arcly packages the stream into
# MPEG-TS segments, serving them from memory and recording the very same
# segments to disk, where nginx (plain HTTP, one worker per core) serves
# them as files; `arcly bench` ramps HLS clients against each.
#   bash tests/bench/capacity.sh [STEPS...]      (default: 100 200 400 800 1600)
#   SERVERS=nginx bash tests/bench/capacity.sh   (some servers only: arcly, nginx, nms)
#   KINDS=hls bash tests/bench/capacity.sh       (some kinds only: rtmp, flv, hls, llhls)
# `llhls` runs LL-HLS clients (fMP4 parts through blocking reloads) against
# arcly alone: nginx has no LL-HLS.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in ffmpeg nginx node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "capacity: $tool is missing (apt-get install -y ffmpeg nginx libnginx-mod-rtmp nodejs npm)" >&2; exit 1; }
done
[ -d tests/bench/nms/node_modules/node-media-server ] || npm install --prefix tests/bench/nms --no-audit --no-fund >/dev/null
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "capacity: libnginx-mod-rtmp is missing" >&2; exit 1; }
steps=("${@:-100 200 400 800 1600}")
steps=(${steps[@]})
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p arcly --bin arcly
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
pm=$(( pa + 7 ))
node tests/bench/nms/run.js $pm $(( pa + 8 )) >"$work/nms.log" 2>&1 &
nms_pid=$!
cleanup() { kill $arcly_pid $nginx_pid $nms_pid 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
sleep 1

# CPU ticks (user+system) and RSS (KiB) of a server: arcly's process,
# nginx's master and workers together, or node-media-server's node.
pids_of() {
  case "$1" in
    arcly) echo $arcly_pid ;;
    nms) echo $nms_pid ;;
    *) echo $nginx_pid $(pgrep -P $nginx_pid) ;;
  esac
}
ticks() { local t=0; for p in $(pids_of "$1"); do t=$(( t + $(awk '{print $14+$15}' /proc/$p/stat) )); done; echo $t; }
rss() { local r=0; for p in $(pids_of "$1"); do r=$(( r + $(awk '/VmRSS/ {print $2}' /proc/$p/status) )); done; echo $r; }
hz=$(getconf CLK_TCK)

printf '| kind | server | players | held | delivered Mb/s | CPU %% (of 200) | RSS MiB | RSS per player KiB | marginal KiB per player |\n|---|---|---:|---|---:|---:|---:|---:|---:|\n' > "$work/table.md"

# One ramp of STEPS against URL for a server: KIND SERVER URL SECS
ramp() {
  local kind=$1 server=$2 url=$3 secs=$4
  local base; base=$(rss $server)
  # The marginal cost: growth since the previous step over the players
  # added, which leaves out what a server grows by once under any load.
  local prev_rss=$base prev_n=0
  for n in "${steps[@]}"; do
    local t0 t1 out peak summary joined stalls errors mbps need held cpu per
    t0=$(ticks $server)
    out=$("$ARCLY" bench --url "$url" --players "$n" --ramp 500 --duration "$secs" ${BENCH_FLAGS:-})
    echo "$out" > "$work/bench-$kind-$server-$n.txt"
    t1=$(ticks $server)
    peak=$(rss $server)
    summary=$(echo "$out" | tail -1)
    joined=$(echo "$summary" | sed -E 's/.*joined ([0-9]+).*/\1/')
    stalls=$(echo "$summary" | sed -E 's/.*stalls ([0-9]+).*/\1/')
    errors=$(echo "$summary" | sed -E 's/.*errors ([0-9]+).*/\1/')
    # The delivered rate over the last seconds, when all players run (HLS
    # arrives a segment at a time, so it is averaged over longer).
    local window=5; [ "$kind" = hls ] && window=10
    mbps=$(echo "$out" | grep -E '^t=' | tail -$window | sed -E 's/.* ([0-9.]+) Mbit\/s.*/\1/' | awk '{s+=$1} END {printf "%.1f", s/NR}')
    need=$(awk -v n=$n -v r=$rate_kbps 'BEGIN {printf "%.1f", 0.9*n*r/1000}')
    held=no
    if [ "$joined" = "$n" ] && [ "$stalls" = 0 ] && [ "$errors" = 0 ] && awk -v a=$mbps -v b=$need 'BEGIN {exit !(a>=b)}'; then held=yes; fi
    cpu=$(awk -v d=$(( t1 - t0 )) -v hz=$hz -v s=$secs 'BEGIN {printf "%.0f", 100*d/hz/s}')
    per=$(( (peak - base) / n ))
    local marginal=$(( (peak - prev_rss) / (n - prev_n) ))
    prev_rss=$peak; prev_n=$n
    printf '| %s | %s | %d | %s | %s | %s | %d | %d | %d |\n' $kind $server $n $held $mbps $cpu $(( peak / 1024 )) $per $marginal | tee -a "$work/table.md"
    [ $held = yes ] || break
  done
}

kinds="${KINDS:-rtmp flv hls llhls}"
if [[ " $kinds " == *" rtmp "* ]]; then
for server in ${SERVERS:-arcly nginx nms}; do
  port=$pa; [ $server = nginx ] && port=$pn; [ $server = nms ] && port=$pm
  url="rtmp://127.0.0.1:$port/live/cap"
  ffmpeg -v error -re -stream_loop -1 -i "$in" -c copy -f flv "$url" &
  pub=$!
  # The base memory is taken once the stream's buffers are full (arcly's
  # ring holds 1,024 frames: 13 s of this stream), so that it is not
  # counted against the players.
  sleep 16
  ramp rtmp $server "$url" 12
  kill $pub 2>/dev/null || true
  wait $pub 2>/dev/null || true
done
fi

if [[ " $kinds " == *" flv "* ]]; then
  # arcly with its HTTP port on (it also packages the one stream as LL-HLS,
  # a constant cost beside the players').
  kill $arcly_pid 2>/dev/null || true
  wait $arcly_pid 2>/dev/null || true
  pf=$(( pa + 9 )); pr4=$(( pa + 10 ))
  "$ARCLY" --rtmp 127.0.0.1:$pr4 --http 127.0.0.1:$pf --log warn &
  arcly_pid=$!
  sleep 1
  for server in ${SERVERS:-arcly nms}; do
    [ $server = nginx ] && continue # nginx-rtmp serves no HTTP-FLV
    rtmp_port=$pr4; http_port=$pf
    [ $server = nms ] && { rtmp_port=$pm; http_port=$(( pa + 8 )); }
    ffmpeg -v error -re -stream_loop -1 -i "$in" -c copy -f flv "rtmp://127.0.0.1:$rtmp_port/live/cap" &
    pub=$!
    sleep 16
    ramp flv $server "http://127.0.0.1:$http_port/live/cap.flv" 12
    kill $pub 2>/dev/null || true
    wait $pub 2>/dev/null || true
  done
fi

if [[ " $kinds " == *" hls "* ]]; then
  # The HLS arcly: TS segments of 2 s, served from memory and recorded to
  # disk; nginx serves the recording.
  kill $arcly_pid $nginx_pid 2>/dev/null || true
  wait $arcly_pid $nginx_pid 2>/dev/null || true
  ph=$(( pa + 2 )); pr2=$(( pa + 3 )); pnh=$(( pa + 4 ))
  rm -rf "$work/rec" && mkdir -p "$work/rec" "$work/nginx-http/logs"
  "$ARCLY" --rtmp 127.0.0.1:$pr2 --http 127.0.0.1:$ph --ts --record "$work/rec" --log warn &
  arcly_pid=$!
  cat > "$work/nginx-http/nginx.conf" <<CONF
worker_processes auto;
daemon off;
error_log $work/nginx-http/logs/error.log warn;
pid $work/nginx-http/nginx.pid;
events { worker_connections 20000; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server { listen 127.0.0.1:$pnh; root $work/rec; }
}
CONF
  nginx -p "$work/nginx-http" -c "$work/nginx-http/nginx.conf" &
  nginx_pid=$!
  sleep 1
  ffmpeg -v error -re -stream_loop -1 -i "$in" -c copy -f flv "rtmp://127.0.0.1:$pr2/live/cap" &
  pub=$!
  sleep 16
  rec=$(cd "$work/rec" && ls -d live/cap/*/ | head -1)
  for server in ${SERVERS:-arcly nginx}; do
    [ $server = nms ] && continue # node-media-server 2.7 makes no HLS of its own here
    url="http://127.0.0.1:$ph/live/cap/index.m3u8"
    [ $server = nginx ] && url="http://127.0.0.1:$pnh/${rec}index.m3u8"
    ramp hls $server "$url" 20
  done
  kill $pub 2>/dev/null || true
fi

if [[ " $kinds " == *" llhls "* ]]; then
  kill $arcly_pid 2>/dev/null || true
  wait $arcly_pid 2>/dev/null || true
  pl=$(( pa + 5 )); pr3=$(( pa + 6 ))
  "$ARCLY" --rtmp 127.0.0.1:$pr3 --http 127.0.0.1:$pl --log warn &
  arcly_pid=$!
  sleep 1
  ffmpeg -v error -re -stream_loop -1 -i "$in" -c copy -f flv "rtmp://127.0.0.1:$pr3/live/cap" &
  pub=$!
  sleep 16
  BENCH_FLAGS=--ll-hls ramp llhls arcly "http://127.0.0.1:$pl/live/cap/index.m3u8" 20
  kill $pub 2>/dev/null || true
fi
echo
cat "$work/table.md"
