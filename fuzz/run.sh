#!/usr/bin/env bash
# Runs fuzz targets for SECONDS each (default 30): every target, or those
# named after SECONDS. JOBS (default 1) targets run side by side.
#
#   fuzz/run.sh 30                 # every target, 30 s each (what CI runs)
#   JOBS=2 fuzz/run.sh 600 h264    # one target for ten minutes
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain takes
# its nightly flags with RUSTC_BOOTSTRAP=1. Each target starts from its
# corpus in fuzz/corpus/ plus seeds cut from the committed captures of real
# clients (fuzz/seeds/, rebuilt on every run). Findings land in
# fuzz/artifacts/; the run fails if any target found one.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
shift || true
jobs="${JOBS:-1}"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then targets="$*"; else targets="$(cargo fuzz list)"; fi

# Seeds: the heads of the committed captures, per target.
rm -rf seeds && mkdir -p seeds logs
rtmp=../protocols/rtmp/testdata
media=../core/testdata
seed() { # seed TARGET FILE BYTES
  mkdir -p "seeds/$1"
  head -c "$3" "$2" >"seeds/$1/$(basename "$2").$3"
}
for f in "$rtmp"/*.c2s; do
  for n in 4096 32768; do seed rtmp_server "$f" "$n"; done
done
seed flv_file "$media/ffmpeg5_h264_aac_1s.flv" 32768
seed rtmp_flv_tag "$media/ffmpeg5_h264_aac_1s.flv" 4096
for f in "$media"/*.ts; do
  for t in ts_demux ts_roundtrip hls; do seed "$t" "$f" 37600; done
done
seed av1 "$media/av1.obu" 4096
mkdir -p seeds/http_client
seed http_client ../protocols/http/testdata/flvjs_flv.s2c 4096
printf 'HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\nseg0.ts\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' > seeds/http_client/live
seed vp9 "$media/vp9.ivf" 4096
# The server's request framing: pipelined requests and each refused case
# (RFC 9112 framing, paths that must not be routed), split at byte 0's value.
mkdir -p seeds/http_request
n=0
for r in \
  'GET /live/a/index.m3u8?token=t HTTP/1.1\r\nHost: x\r\n\r\nGET /live/a/media.m3u8?_HLS_msn=5&_HLS_part=1 HTTP/1.1\r\n\r\nHEAD /x%20y HTTP/1.0\r\n\r\n' \
  'POST /whip HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /a HTTP/1.1\r\n\r\n' \
  'POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!' \
  'POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello' \
  'POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello' \
  'POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n' \
  'POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' \
  'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n' \
  'GET / HTTP/1.1\nHost: x\n\n' \
  'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n' \
  'POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello' \
  'GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n' \
  'GET /live/a%2f..%2fb/x HTTP/1.1\r\n\r\nGET /live/a%5Cb/x HTTP/1.1\r\n\r\n' \
  'GET /live/%2e%2e/x%00 HTTP/1.1\r\n\r\n' \
  'GET /live/a.flv HTTP/1.1\r\n\r\nGET /live/b.flv?token=t HTTP/1.1\r\nConnection: close\r\n\r\nHEAD /live/c.flv HTTP/1.1\r\n\r\n' \
  'GET /a HTTP/1.1\r\n\r\nGET /ab HTTP/1.1\r\n\r\nGET /abc HTTP/1.1\r\n\r\nGET /abcd HTTP/1.1\r\n\r\nGET /abcde HTTP/1.1\r\n\r\nGET /abcdef HTTP/1.1\r\n\r\n'; do
  n=$((n + 1))
  { printf "\\x$(printf %02x $((n * 7)))"; printf '%b' "$r"; } >"seeds/http_request/vector$n"
done

# WHIP: ffmpeg 9's recorded offers; at the endpoint, the waiting session's
# STUN binding (a datagram starting 0xff) from two peers, then bytes.
mkdir -p seeds/webrtc_offer seeds/webrtc_endpoint
cp ../protocols/webrtc/testdata/*.sdp seeds/webrtc_offer/
printf '\x01\xff\x41\xff\x05\x16\xfe\xfd\x00\x00\x04\x80\x60\x00\x01' > seeds/webrtc_endpoint/binding

# RESP: what redis-server answered redis-cli and the gateway (each capture's
# server-to-client bytes, joined; the large COMMAND DOCS reply cut short).
mkdir -p seeds/resp_replies
python3 - ../protocols/resp/testdata <<'PY'
import pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.txt")):
    data = b"".join(bytes.fromhex(l.split()[2]) for l in open(f) if l.startswith("s2c"))
    (pathlib.Path("seeds/resp_replies") / f.stem).write_bytes(data[-8192:])
PY

# Our SRT caller: what the gateway answered real callers (the recorded
# handshakes and the first control packets), as [len][datagram] after a mode
# byte (0: pull, 4: push).
mkdir -p seeds/srt_caller
python3 - ../protocols/srt/testdata/callers <<'PY'
import pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.txt")):
    out = bytearray([4 if "publish" in f.name else 0])
    for line in f.read_text().splitlines():
        d, _, h = line.split(" ")
        b = bytes.fromhex(h)
        if d == "l2c" and len(b) < 256 and len(out) < 4096:
            out += bytes([len(b)]) + b
    pathlib.Path("seeds/srt_caller", f.stem).write_bytes(out)
PY

# The RTP depacketizers: the RTP that GStreamer and ffmpeg sent in the
# committed RTSP captures, per channel, as [mode][flags=2][len LE][packet]...
# (mode: 1 H.264, 3 H.265, 4 AAC, 7 Opus; see the target's docs).
mkdir -p seeds/rtp_depacketize
python3 - ../protocols/rtsp/testdata <<'PY'
import pathlib, sys
def frames(path, direction):
    data = bytearray()
    for line in open(path):
        d, _, h = line.split()
        if d == direction:
            data += bytes.fromhex(h)
    i = 0
    while i < len(data):
        if data[i] == 0x24:
            if i + 4 > len(data): return
            n = int.from_bytes(data[i + 2:i + 4], "big")
            yield data[i + 1], bytes(data[i + 4:i + 4 + n])
            i += 4 + n
            continue
        end = data.find(b"\r\n\r\n", i)
        if end < 0: return
        length = 0
        for l in data[i:end].split(b"\r\n"):
            if l.lower().startswith(b"content-length:"):
                length = int(l.split(b":", 1)[1])
        i = end + 4 + length
d = pathlib.Path(sys.argv[1])
for name, direction, channel, mode in [
    ("gst_server_h264aac_tcp", "s2c", 0, 1), ("gst_server_h264aac_tcp", "s2c", 2, 4),
    ("gst_server_h265_tcp", "s2c", 0, 3), ("gst_server_opus_tcp", "s2c", 2, 7),
    ("ffmpeg5_publish_tcp", "c2s", 0, 1), ("ffmpeg5_publish_tcp", "c2s", 2, 4),
]:
    out = bytearray([mode])
    for c, pkt in frames(d / (name + ".txt"), direction):
        if c == channel and len(out) + len(pkt) < 32768:
            out += bytes([2]) + len(pkt).to_bytes(2, "little") + pkt
    pathlib.Path("seeds/rtp_depacketize", f"{name}.ch{channel}").write_bytes(out)
PY

cargo fuzz build >/dev/null

run_one() {
  local t="$1"
  mkdir -p "corpus/$t"
  local extra=()
  [ -d "seeds/$t" ] && extra=("seeds/$t")
  if cargo fuzz run "$t" "corpus/$t" "${extra[@]}" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
      >"logs/$t.log" 2>&1; then
    echo "fuzz: $t ok for ${secs}s, $(grep -o 'Done [0-9]* runs' "logs/$t.log" | tail -1)"
  else
    echo "fuzz: $t FAILED (fuzz/logs/$t.log, fuzz/artifacts/$t/)"
    tail -30 "logs/$t.log"
    return 1
  fi
}
export -f run_one
export secs
# shellcheck disable=SC2086
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'
