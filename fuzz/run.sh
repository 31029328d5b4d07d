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
seed flv_file "$rtmp/ffmpeg5_h264_aac_1s.flv" 32768
seed rtmp_flv_tag "$rtmp/ffmpeg5_h264_aac_1s.flv" 4096
for f in "$media"/*.ts; do
  for t in ts_demux ts_roundtrip hls; do seed "$t" "$f" 37600; done
done
seed av1 "$media/av1.obu" 4096
mkdir -p seeds/http_client
printf 'HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\nseg0.ts\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' > seeds/http_client/live
seed vp9 "$media/vp9.ivf" 4096

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
