#!/bin/sh
# Re-records the crypto captures: libsrt's srt-live-transmit as listener
# (sending ffmpeg's MPEG-TS) and as caller (receiving), with relay.py between
# them logging every datagram, then extract.py keeps what the tests read.
# Needs srt-live-transmit, ffmpeg (libx264) and python3; uses 127.0.0.1 ports
# 40100-40602.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PASS=arcly-srt-test-passphrase

# one KEYLEN BASEPORT NAME CALLER_PASSPHRASE DATA_PACKETS HANDSHAKES
one() {
    n=$1; b=$2; out="$WORK/$3"; mkdir -p "$out"
    srt-live-transmit -loglevel:warning "udp://127.0.0.1:$b" \
        "srt://127.0.0.1:$((b + 1))?mode=listener&passphrase=$PASS&pbkeylen=$n" \
        > "$out/listener.log" 2>&1 &
    lis=$!
    python3 "$HERE/../relay.py" $((b + 2)) $((b + 1)) "$out/relay.log" 3 &
    rel=$!
    sleep 0.5
    srt-live-transmit -loglevel:warning \
        "srt://127.0.0.1:$((b + 2))?passphrase=$4&pbkeylen=$n" file://con \
        > "$out/caller.ts" 2> "$out/caller.log" &
    cal=$!
    sleep 1
    ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=25 -t 3 \
        -c:v libx264 -preset ultrafast -f mpegts "udp://127.0.0.1:$b?pkt_size=1316" || true
    sleep 1.5
    kill $cal $lis 2>/dev/null || true
    wait $rel || true
    python3 "$HERE/extract.py" "$out/relay.log" "$out/caller.ts" "$HERE/$3" \
        "libsrt $(srt-live-transmit -version 2>&1 | sed -n 's/.*version: \([0-9.]*\).*/\1/p' | head -1), pbkeylen=$n, listener passphrase $PASS, caller passphrase $4" "$5" "$6"
}

one 16 40100 aes128 "$PASS" 5 1000
one 24 40200 aes192 "$PASS" 5 1000
one 32 40300 aes256 "$PASS" 5 1000
one 16 40400 wrong_passphrase wrong-passphrase-here 0 2

# The listener has no passphrase and does not enforce encryption: it answers
# the caller's KMREQ with a one-word KMRSP (NoSecret).
b=40600; out="$WORK/no_secret"; mkdir -p "$out"
srt-live-transmit -loglevel:warning "udp://127.0.0.1:$b" \
    "srt://127.0.0.1:$((b + 1))?mode=listener&enforcedencryption=false" > "$out/listener.log" 2>&1 &
lis=$!
python3 "$HERE/../relay.py" $((b + 2)) $((b + 1)) "$out/relay.log" 2 &
rel=$!
sleep 0.5
srt-live-transmit -loglevel:warning \
    "srt://127.0.0.1:$((b + 2))?passphrase=$PASS&enforcedencryption=false" file://con \
    > "$out/caller.ts" 2> "$out/caller.log" &
cal=$!
sleep 1.5
kill $cal $lis 2>/dev/null || true
wait $rel || true
python3 "$HERE/extract.py" "$out/relay.log" "$out/caller.ts" "$HERE/no_secret" \
    "libsrt, caller passphrase $PASS, listener without passphrase (enforcedencryption=false)" 0 2
