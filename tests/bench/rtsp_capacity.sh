#!/usr/bin/env bash
# RTSP players over TCP held by arcly and by GStreamer's RTSP server serving
# the same stream side by side. GStreamer's server encodes one live stream
# (640x360 H.264 at 1 Mb/s + AAC, one shared pipeline); arcly pulls it from
# there (--pull) and serves it, so both send the same bytes. For each count,
# `arcly bench` runs that many RTSP players for 30 s against arcly, then
# against GStreamer's server; each server's CPU (user + system over the run)
# and memory (RSS at the end) are read from /proc. GStreamer's figure
# includes its encoder; its cost with only arcly's pull attached is printed
# first, to subtract.
#
#   bash tests/bench/rtsp_capacity.sh 100 200 400
#
# Needs GStreamer with its RTSP server (python3-gi,
# gir1.2-gst-rtsp-server-1.0, x264enc, avenc_aac) and builds arcly in release.
set -euo pipefail
# Hundreds of players: more descriptors than the default 1,024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/../.."
counts="${*:-100 200 400}"
for t in ffmpeg gst-launch-1.0; do command -v $t >/dev/null || { echo "rtsp_capacity: $t is missing" >&2; exit 1; }; done
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer','1.0')" 2>/dev/null \
  || { echo "rtsp_capacity: GStreamer's RTSP server is missing (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)" >&2; exit 1; }
cargo build -q --release -p arcly
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/arcly"
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/gst_live_server.py" <<'PY'
import gi, sys
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib
Gst.init(None)
s = GstRtspServer.RTSPServer(); s.set_service(sys.argv[1])
f = GstRtspServer.RTSPMediaFactory(); f.set_shared(True)
f.set_launch("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=25/1 "
             "! x264enc tune=zerolatency speed-preset=veryfast bitrate=1000 key-int-max=50 "
             "! rtph264pay name=pay0 pt=96 config-interval=-1 "
             "audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=1 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )")
s.get_mount_points().add_factory("/live/cap", f); s.attach(None)
print("ready", flush=True); GLib.MainLoop().run()
PY
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
run() { # run NAME PID URL N
  local a b; a=$(cpu "$2")
  local out; out=$("$bin" bench --url "$3" --players "$4" --ramp 200 --duration 30 | tail -1)
  b=$(cpu "$2")
  echo "$1 $4 players: CPU $(( (b - a) * 100 / hz / 30 )) % of a core, RSS $(( $(rss "$2") / 1024 )) MiB; $out"
}
/usr/bin/python3 "$dir/gst_live_server.py" 18555 >/dev/null & gst=$!
sleep 1.5
"$bin" --rtsp 127.0.0.1:18554 --rtmp off --http off --srt off --pull live/cap=rtsp://127.0.0.1:18555/live/cap 2>/dev/null & arcly=$!
sleep 3
a=$(cpu $gst); sleep 10; b=$(cpu $gst)
echo "gstreamer encoding, arcly's pull its one client: CPU $(( (b - a) * 100 / hz / 10 )) % of a core"
for n in $counts; do
  run arcly $arcly rtsp://127.0.0.1:18554/live/cap "$n"
  run gstreamer $gst rtsp://127.0.0.1:18555/live/cap "$n"
done
