#!/bin/sh
# Re-records the real callers' captures in this folder: each caller talks to
# the arcly gateway through ../relay.py, which logs every datagram both ways
# with its time. Needs the arcly binary (ARCLY_BIN, default the workspace's
# debug build), ffmpeg (libx264, libsrt), srt-live-transmit, gst-launch-1.0
# (srtsink/srtsrc, x264enc, avenc_aac, mpegtsmux) and python3; uses
# 127.0.0.1 UDP ports 40700-40720.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ARCLY=${ARCLY_BIN:-$HERE/../../../../target/debug/arcly}
WORK=$(mktemp -d)
SRT=40700
"$ARCLY" --srt 127.0.0.1:$SRT --rtmp off --http off --linger 0 > "$WORK/arcly.log" 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1

BITEXACT="-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -threads 1"
SRC="-f lavfi -i testsrc=size=160x120:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000"
ENC="$BITEXACT -c:v libx264 -preset ultrafast -g 25 -bf 0 -pix_fmt yuv420p -c:a aac -b:a 32k"

# relay NAME FRONT_PORT: logs the datagrams between a caller and the gateway.
relay() {
    python3 "$HERE/../relay.py" "$2" $SRT "$HERE/$1.txt" 1.5 timed &
    RELAY=$!
    sleep 0.3
}
done_with() {
    wait $RELAY || true
    printf '%s: %s datagrams, %s bytes\n' "$1" "$(wc -l < "$HERE/$1.txt")" "$(wc -c < "$HERE/$1.txt")"
}

# Publishers: 2 s of 160x120 H.264 at 25 fps and AAC.
relay ffmpeg5_publish 40701
ffmpeg -hide_banner -loglevel error -re $SRC -t 2 $ENC -f mpegts \
    "srt://127.0.0.1:40701?streamid=publish:live/ffmpeg&latency=120000&pkt_size=1316"
done_with ffmpeg5_publish

relay slt_publish 40702
srt-live-transmit -loglevel:error udp://127.0.0.1:40710 \
    "srt://127.0.0.1:40702?streamid=publish:live/slt&latency=120" &
SLT=$!
sleep 0.5
ffmpeg -hide_banner -loglevel error -re $SRC -t 2 $ENC -f mpegts "udp://127.0.0.1:40710?pkt_size=1316"
sleep 0.5
kill -INT $SLT; wait $SLT || true
done_with slt_publish

relay gst_publish 40703
gst-launch-1.0 -q -e videotestsrc is-live=true num-buffers=50 \
    ! video/x-raw,width=160,height=120,framerate=25/1 \
    ! x264enc tune=zerolatency bitrate=150 key-int-max=25 bframes=0 ! h264parse ! mpegtsmux name=m alignment=7 \
    ! srtsink uri="srt://127.0.0.1:40703?streamid=publish:live/gst" latency=120 \
    audiotestsrc is-live=true num-buffers=94 ! avenc_aac ! aacparse ! m. > /dev/null
done_with gst_publish

# Players: 2 s of a stream published straight to the gateway.
ffmpeg -hide_banner -loglevel error -re $SRC -t 14 $ENC -f mpegts \
    "srt://127.0.0.1:$SRT?streamid=publish:live/src&latency=120000&pkt_size=1316" &
PUB=$!
sleep 1.5

relay gst_play 40706
timeout -s INT 2 gst-launch-1.0 -q -e srtsrc uri="srt://127.0.0.1:40706?streamid=read:live/src" latency=120 \
    ! filesink location="$WORK/gst_play.ts" || true
done_with gst_play

relay slt_play 40705
srt-live-transmit -loglevel:error "srt://127.0.0.1:40705?streamid=read:live/src&latency=120" \
    file://con > "$WORK/slt_play.ts" &
SLT=$!
sleep 2
kill -INT $SLT; wait $SLT || true
done_with slt_play

relay ffmpeg5_play 40704
ffmpeg -hide_banner -loglevel error -i "srt://127.0.0.1:40704?streamid=read:live/src&latency=120000" \
    -t 2 -c copy -f mpegts -y "$WORK/ffmpeg5_play.ts"
done_with ffmpeg5_play

wait $PUB || true
