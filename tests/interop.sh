#!/usr/bin/env bash
# The interop suite: our code against real third-party clients (ffmpeg,
# ffprobe, nginx-rtmp, GStreamer, srt-live-transmit). Fails loudly, naming the
# tool, when a client is missing: install them as .ci/run does.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in ffmpeg ffprobe; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "interop: missing real clients: ${missing[*]} (apt-get install -y ffmpeg)" >&2
  exit 1
fi

# The interop tests are ordinary cargo tests behind the `interop` feature of
# the cross-crate test crate; each one also names its tool when it is absent.
cargo test -p arcly-tests --features interop -- --test-threads=1
