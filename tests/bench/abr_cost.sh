#!/usr/bin/env bash
# What an adaptive-bitrate ladder costs through arcly, against the same
# ladder made by one ffmpeg command reading the RTMP stream directly.
#
#   A: arcly --abr 480p,360p,240p: the stream goes to one ffmpeg as MPEG-TS
#      through arcly's muxer, its three rungs come back through arcly's
#      demuxer and are published and packaged for LL-HLS like any stream.
#   B: arcly with no ladder (the source packaged alone), and one ffmpeg with
#      the same encoding arguments reading rtmp://.../live/cam and writing
#      its three rungs as MPEG-TS to /dev/null.
#
# The same 60 s of 720p30 H.264 + AAC is published by ffmpeg -re in both.
# CPU is user + system seconds from getrusage: arcly's with the ffmpeg it
# ran and reaped, and the direct ffmpeg's. The publisher is not counted.
# A - B is what the pipe path (muxing, demuxing, the renditions' packaging)
# adds.
#
#   bash tests/bench/abr_cost.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
for t in ffmpeg python3; do command -v $t >/dev/null || { echo "abr_cost: $t is missing" >&2; exit 1; }; done
cargo build -q --release -p arcly
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

# Runs a command, passing SIGTERM on, and writes its CPU seconds (with its
# reaped descendants') to the file named first.
cat >"$dir/cpu.py" <<'PY'
import resource, signal, subprocess, sys
out, cmd = sys.argv[1], sys.argv[2:]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: p.terminate())
p.wait()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(out, "w").write("%.2f\n" % (r.ru_utime + r.ru_stime))
PY

ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$secs" \
  -c:v libx264 -preset veryfast -b:v 2500k -g 60 -keyint_min 60 -sc_threshold 0 \
  -pix_fmt yuv420p -c:a aac -f mpegts "$dir/in.ts"

# The ladder's encoding arguments, as arcly gives them to its ffmpeg.
ladder=(-filter_complex '[0:v:0]split=3[s0][s1][s2];[s0]scale=-2:480[v0];[s1]scale=-2:360[v1];[s2]scale=-2:240[v2]'
  -map '[v0]' -b:v:0 1400k -maxrate:v:0 1540k -bufsize:v:0 2800k
  -map '[v1]' -b:v:1 800k -maxrate:v:1 880k -bufsize:v:1 1600k
  -map '[v2]' -b:v:2 400k -maxrate:v:2 440k -bufsize:v:2 800k
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -bf 0 -sc_threshold 0 -g 1000
  -force_key_frames source -map 0:a:0 -c:a copy)

port=19735
http=19736
gateway() { # OUT, extra flags...
  local out="$1"; shift
  python3 "$dir/cpu.py" "$out" "$bin" --rtmp "127.0.0.1:$port" --http "127.0.0.1:$http" \
    --rtsp off --srt off --webrtc off --linger 1 "$@" &
  gw=$!
  sleep 1
}
publish() {
  ffmpeg -v error -re -i "$dir/in.ts" -c copy -f flv "rtmp://127.0.0.1:$port/live/cam"
}

echo "A: arcly --abr 480p,360p,240p ($secs s)"
gateway "$dir/a.cpu" --abr 480p,360p,240p
publish
sleep 4 # the stream ends after its 1 s linger: its ffmpeg is killed and reaped
kill -TERM "$gw"; wait "$gw" || true

echo "B: arcly alone, and one ffmpeg reading its RTMP stream ($secs s)"
gateway "$dir/b-arcly.cpu"
publish &
pub=$!
sleep 0.5
python3 "$dir/cpu.py" "$dir/b-ffmpeg.cpu" ffmpeg -v error -nostdin -i "rtmp://127.0.0.1:$port/live/cam" \
  -copyts "${ladder[@]}" -f mpegts -y /dev/null &
direct=$!
wait "$pub"
wait "$direct" || true
kill -TERM "$gw"; wait "$gw" || true

a=$(cat "$dir/a.cpu"); ba=$(cat "$dir/b-arcly.cpu"); bf=$(cat "$dir/b-ffmpeg.cpu")
python3 - "$a" "$ba" "$bf" "$secs" <<'PY'
import sys
a, ba, bf, secs = map(float, sys.argv[1:])
b = ba + bf
print(f"A  arcly with its ladder's ffmpeg : {a:7.2f} CPU s ({100*a/secs:5.1f} % of a core)")
print(f"B  arcly alone                    : {ba:7.2f} CPU s ({100*ba/secs:5.1f} %)")
print(f"B  ffmpeg reading RTMP directly   : {bf:7.2f} CPU s ({100*bf/secs:5.1f} %)")
print(f"A - B, the pipe path's cost       : {a-b:7.2f} CPU s ({100*(a-b)/secs:5.1f} % of a core, {100*(a-b)/b:4.1f} % of B)")
PY
