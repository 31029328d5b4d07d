#!/usr/bin/env bash
# WebRTC (WHEP) players held by arcly for one 1 Mb/s source: ffmpeg 9
# publishes 640x360 H.264 (1 Mb/s, no B-frames) + Opus (64 kb/s) over
# RTMP, looped; for each count, `arcly bench` runs that many WHEP players
# (each its own UDP socket, ICE, DTLS, SRTP) for 20 s. arcly's CPU (user +
# system over the run) and memory (RSS at the end) are read from /proc.
# The load tool runs on the same cores and decrypts what arcly encrypts.
#
#   bash tests/bench/whep_capacity.sh 50 100 200 400
#
# Needs ffmpeg 9 (pip install imageio-ffmpeg) and builds arcly in release.
set -euo pipefail
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/../.."
counts="${*:-50 100 200}"
ff9="${ARCLY_FFMPEG9:-$(python3 -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null || true)}"
[ -x "$ff9" ] || { echo "whep_capacity: ffmpeg 9 is missing (pip install imageio-ffmpeg)" >&2; exit 1; }
cargo build -q --release -p arcly
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$ff9" -v error -y -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 60 -c:v libx264 -profile:v baseline -bf 0 -g 50 -b:v 1000k -maxrate 1000k -bufsize 1000k \
  -pix_fmt yuv420p -c:a libopus -b:a 64k -ac 2 "$dir/src.mkv"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
"$bin" --rtmp 127.0.0.1:19355 --http 127.0.0.1:18895 --webrtc 127.0.0.1:18195 --rtsp off --srt off \
  --linger 0 2>/dev/null & arcly=$!
sleep 1
"$ff9" -v error -re -stream_loop -1 -i "$dir/src.mkv" -c copy -f flv rtmp://127.0.0.1:19355/live/cap 2>/dev/null &
sleep 3
a=$(cpu $arcly); sleep 10; b=$(cpu $arcly)
echo "arcly with the publisher only: CPU $(( (b - a) * 100 / hz / 10 )) % of a core, RSS $(( $(rss $arcly) / 1024 )) MiB"
for n in $counts; do
  a=$(cpu $arcly)
  out=$("$bin" bench --url http://127.0.0.1:18895/live/cap/whep --players "$n" --ramp 100 --duration 20 | tail -1)
  b=$(cpu $arcly)
  echo "arcly $n WHEP players: CPU $(( (b - a) * 100 / hz / 20 )) % of a core, RSS $(( $(rss $arcly) / 1024 )) MiB; $out"
  sleep 3
done
