#!/bin/sh
# Re-records the client->server captures in this folder.
# Needs: nginx with libnginx-mod-rtmp, Debian ffmpeg 5.1, and ffmpeg 9 from
# `pip install imageio-ffmpeg`. Traffic stays on 127.0.0.1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PORT=19350
PROXY=19351
F5=ffmpeg
F9=$(python3 -c 'import imageio_ffmpeg as m; print(m.get_ffmpeg_exe())')
mkdir -p "$WORK/conf" "$WORK/logs"
cat > "$WORK/conf/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:$PORT; chunk_size 4096; application live { live on; } } }
CONF
nginx -p "$WORK" -c conf/nginx.conf
trap 'kill "$(cat "$WORK/nginx.pid")"; rm -rf "$WORK"' EXIT
sleep 0.5

SRC="-f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000"
BITEXACT="-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -threads 1"

# record NAME FFMPEG ARGS...: publish through the recording proxy.
record() {
    name=$1; shift
    python3 "$HERE/record_proxy.py" $PROXY $PORT "$HERE/$name.c2s" &
    sleep 1
    "$@" || true
    wait
    ls -l "$HERE/$name.c2s"
}

record ffmpeg5_h264_aac_publish $F5 -hide_banner -loglevel error -re $SRC -t 3 $BITEXACT \
    -c:v libx264 -preset ultrafast -g 30 -pix_fmt yuv420p -c:a aac -b:a 64k \
    -f flv "rtmp://127.0.0.1:$PROXY/live/test5?token=abc"
record ffmpeg9_hevc_aac_publish $F9 -hide_banner -loglevel error -re $SRC -t 3 $BITEXACT \
    -c:v libx265 -preset ultrafast -x265-params log-level=error -g 30 -pix_fmt yuv420p -c:a aac -b:a 64k \
    -f flv "rtmp://127.0.0.1:$PROXY/live/test9hevc"
record ffmpeg9_av1_opus_publish $F9 -hide_banner -loglevel error -re $SRC -t 3 $BITEXACT \
    -c:v libsvtav1 -preset 12 -g 30 -pix_fmt yuv420p -c:a libopus -b:a 48k \
    -f flv "rtmp://127.0.0.1:$PROXY/live/test9av1"

# A player: publish straight to nginx, play through the proxy.
$F5 -hide_banner -loglevel error -re $SRC -t 6 -c:v libx264 -preset ultrafast -g 30 \
    -c:a aac -f flv "rtmp://127.0.0.1:$PORT/live/feed" &
PUB=$!
sleep 1
record ffmpeg5_play timeout -k 3 4 $F5 -hide_banner -loglevel error -rw_timeout 3000000 \
    -i "rtmp://127.0.0.1:$PROXY/live/feed" -t 2 -f null -
wait $PUB || true
$F5 -hide_banner -loglevel error -re $SRC -t 6 -c:v libx264 -preset ultrafast -g 30 \
    -c:a aac -f flv "rtmp://127.0.0.1:$PORT/live/feed" &
PUB=$!
sleep 1
record ffmpeg9_play timeout -k 3 4 $F9 -hide_banner -loglevel error -rw_timeout 3000000 \
    -i "rtmp://127.0.0.1:$PROXY/live/feed" -t 2 -f null -
wait $PUB || true

# The benchmark's input: 10 s of 1080p H.264 (ultrafast, 1.8 Mb/s) + AAC.
record ffmpeg5_1080p_publish $F5 -hide_banner -loglevel error \
    -f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 10 $BITEXACT -c:v libx264 -preset ultrafast -b:v 1800k -maxrate 1800k -bufsize 1800k -g 60 \
    -pix_fmt yuv420p -c:a aac -b:a 96k -f flv "rtmp://127.0.0.1:$PROXY/live/bench"

# GStreamer rtmp2sink: H.264 with B-frames (flvmux) + AAC.
python3 "$HERE/record_proxy.py" $PROXY $PORT "$HERE/gstreamer_h264_aac_publish.c2s" &
sleep 1
timeout 30 gst-launch-1.0 -q -e videotestsrc num-buffers=90 is-live=true \
    ! video/x-raw,width=320,height=240,framerate=30/1 \
    ! x264enc key-int-max=30 bframes=2 speed-preset=ultrafast bitrate=400 ! h264parse \
    ! flvmux name=m streamable=true ! rtmp2sink location=rtmp://127.0.0.1:$PROXY/live/gst \
    audiotestsrc num-buffers=140 is-live=true samplesperbuffer=1024 \
    ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! m. || true
wait
