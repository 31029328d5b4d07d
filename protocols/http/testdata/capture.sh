#!/bin/sh
# Re-records the HTTP captures in this folder: what real clients send to the
# gateway's HTTP port (.c2s) and what the gateway answered (.s2c), through
# the recording proxy of ../../rtmp/testdata. Needs: Debian's curl and
# ffmpeg 5.1, and a built `arcly` (ARCLY_BIN, default target/debug/arcly).
# Traffic stays on 127.0.0.1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BIN=${ARCLY_BIN:-$ROOT/target/debug/arcly}
PROXY="python3 $HERE/../../rtmp/testdata/record_proxy.py"
"$BIN" --rtmp 127.0.0.1:19360 --http 127.0.0.1:19361 >/dev/null 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null' EXIT
sleep 1
ffmpeg -v error -re -f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 12 -c:v libx264 -g 30 -c:a aac -f flv rtmp://127.0.0.1:19360/live/cap &
PUB=$!
sleep 6
# curl: the playlists and a segment on one keep-alive connection.
$PROXY 19362 19361 "$HERE/curl_keepalive.c2s" --server-out "$HERE/curl_keepalive.s2c" &
sleep 0.3
SEG=$(curl -s http://127.0.0.1:19361/live/cap/media.m3u8 | grep -v '^#' | head -1)
MAP=$(curl -s http://127.0.0.1:19361/live/cap/media.m3u8 | sed -n 's/#EXT-X-MAP:URI="\(.*\)"/\1/p')
curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
  http://127.0.0.1:19362/live/cap/index.m3u8 http://127.0.0.1:19362/live/cap/media.m3u8 \
  "http://127.0.0.1:19362/live/cap/$MAP" "http://127.0.0.1:19362/live/cap/$SEG"
wait %2 2>/dev/null || true
# ffmpeg 5.1 reading the HLS stream for a few seconds over one connection.
$PROXY 19363 19361 "$HERE/ffmpeg5_hls.c2s" --server-out "$HERE/ffmpeg5_hls.s2c" &
sleep 0.3
timeout 8 ffmpeg -v error -http_persistent 1 -i http://127.0.0.1:19363/live/cap/index.m3u8 -t 3 -c copy -f null - || true
# ffmpeg 5.1 playing HTTP-FLV for 2 s, and flv.js in Chromium for 3 s
# (tests/browser/play_flv.mjs; needs `npm install --prefix tests/browser`).
$PROXY 19364 19361 "$HERE/ffmpeg5_flv.c2s" --server-out "$HERE/ffmpeg5_flv.s2c" &
sleep 0.3
timeout 8 ffmpeg -v error -i http://127.0.0.1:19364/live/cap.flv -t 2 -c copy -f null - || true
wait %3 2>/dev/null || true
$PROXY 19365 19361 "$HERE/flvjs_flv.c2s" --server-out "$HERE/flvjs_flv.s2c" &
sleep 0.3
node "$ROOT/tests/browser/play_flv.mjs" http://127.0.0.1:19365/live/cap.flv 3 /dev/null >/dev/null || true
wait $PUB 2>/dev/null || true
