#!/bin/sh
# Re-records the RTSP captures in this folder: each client talks to
# gst_rtsp_server.py (GStreamer's RTSP server) through record_proxy.py, which
# logs both directions of the one TCP connection (RTSP messages and the
# interleaved RTP/RTCP) with their times. Then prints what each client
# received or sent, counted by ffprobe, for the README.
#
# Needs: ffmpeg and ffprobe (Debian 5.1: libx264, aac), gst-launch-1.0 and
# gst-inspect-1.0 (GStreamer 1.22 with rtspsrc, rtspclientsink, x264enc,
# x265enc, opusenc, avenc_aac), /usr/bin/python3 with gi and GstRtspServer
# (Debian python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-rtsp) and
# python3. Uses 127.0.0.1 TCP ports 40800 (server) and 40801 (proxy).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SERVER_PORT=40800
PROXY=40801
GSTPY=/usr/bin/python3

die() { echo "capture.sh: $*" >&2; exit 1; }
for need in ffmpeg:ffmpeg ffprobe:ffmpeg gst-launch-1.0:gstreamer1.0-tools \
        gst-inspect-1.0:gstreamer1.0-tools python3:python3 timeout:coreutils; do
    tool=${need%%:*}
    command -v "$tool" > /dev/null || die "missing tool: $tool (apt-get install ${need#*:})"
done
[ -x $GSTPY ] || die "missing $GSTPY (Debian's python3, which has gi)"
$GSTPY -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' 2> /dev/null \
    || die "missing GstRtspServer for $GSTPY: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp"
for element in rtspsrc rtspclientsink x264enc x265enc opusenc avenc_aac rtph264depay rtpmp4gdepay \
        h264parse aacparse mpegtsmux videotestsrc audiotestsrc; do
    gst-inspect-1.0 "$element" > /dev/null 2>&1 \
        || die "missing GStreamer element: $element (gstreamer1.0-plugins-{base,good,bad,ugly}, gstreamer1.0-libav, gstreamer1.0-rtsp)"
done
for codec in libx264 aac; do
    ffmpeg -hide_banner -encoders 2> /dev/null | grep -q " $codec " || die "ffmpeg lacks the $codec encoder"
done

WORK=$(mktemp -d)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE WORD: until WORD appears in FILE (at most 10 s).
wait_for() {
    i=0
    until grep -q "$2" "$1" 2> /dev/null; do
        i=$((i + 1))
        [ $i -le 100 ] || die "no '$2' in $1 after 10 s: $(cat "$1" "$1.err" 2> /dev/null)"
        sleep 0.1
    done
}

$GSTPY "$HERE/gst_rtsp_server.py" --port $SERVER_PORT --record > "$WORK/server.out" 2> "$WORK/server.out.err" &
SERVER=$!
wait_for "$WORK/server.out" ready

# record NAME COMMAND...: runs COMMAND (which talks to 127.0.0.1:$PROXY)
# while record_proxy.py logs the connection into NAME.txt.
record() {
    name=$1; shift
    python3 "$HERE/record_proxy.py" $PROXY $SERVER_PORT "$HERE/$name.txt" > "$WORK/proxy.out" &
    proxy=$!
    wait_for "$WORK/proxy.out" listening
    "$@" || echo "capture.sh: $name: the client exited with $? (see above)" >&2
    wait $proxy || die "$name: record_proxy.py failed"
    printf '%s.txt: %s chunks (%s c2s), %s bytes\n' "$name" "$(wc -l < "$HERE/$name.txt")" \
        "$(grep -c '^c2s' "$HERE/$name.txt")" "$(wc -c < "$HERE/$name.txt")"
}
# for_seconds N COMMAND...: runs COMMAND, then SIGINT after N seconds.
for_seconds() {
    n=$1; shift
    timeout -k 5 -s INT "$n" "$@" || [ $? -eq 124 ]
}
# count FILE: codec and packet count of each stream in FILE.
count() {
    ffprobe -v error -count_packets -show_entries stream=index,codec_name,nb_read_packets \
        -of csv=p=0 "$1" | sort -u | grep . | sed 's/^/    /'
}

# ffmpeg 5.1 playing, RTP interleaved in the RTSP connection.
for mount in h264aac h265 opus; do
    record gst_server_${mount}_tcp ffmpeg -hide_banner -loglevel error -rtsp_transport tcp \
        -i "rtsp://127.0.0.1:$PROXY/$mount" -t 2 -c copy -f mpegts -y "$WORK/$mount.ts"
    count "$WORK/$mount.ts"
done
# H.264 with B-frames: ffmpeg 5.1 cannot -c copy it from RTSP ("first pts and
# dts value must be set"), so it decodes; framecrc lists each decoded frame.
record gst_server_h264b_tcp ffmpeg -hide_banner -loglevel error -rtsp_transport tcp \
    -i "rtsp://127.0.0.1:$PROXY/h264b" -t 2 -f framecrc -y "$WORK/h264b.crc"
grep -v '^#' "$WORK/h264b.crc" | cut -d, -f1 | sort | uniq -c \
    | awk '{ print "    stream " $2 ": " $1 " decoded frames" }'
# Digest: DESCRIBE, 401 with a challenge, DESCRIBE again with the answer.
record gst_server_auth_tcp ffmpeg -hide_banner -loglevel error -rtsp_transport tcp \
    -i "rtsp://user:pass@127.0.0.1:$PROXY/auth/h264aac" -t 2 -c copy -f mpegts -y "$WORK/auth.ts"
count "$WORK/auth.ts"

# GStreamer's rtspsrc playing for about 2.5 s; SIGINT with -e makes it send
# PAUSE and TEARDOWN.
record gst_rtspsrc_play_tcp for_seconds 2.5 gst-launch-1.0 -q -e \
    rtspsrc location="rtsp://127.0.0.1:$PROXY/h264aac" protocols=tcp name=s \
    s. ! rtph264depay ! h264parse ! mpegtsmux name=m ! filesink location="$WORK/rtspsrc.ts" \
    s. ! rtpmp4gdepay ! aacparse ! m.
count "$WORK/rtspsrc.ts"

# ffmpeg 5.1 publishing 2 s of 160x120 H.264 (25 fps, GOP 25, no B-frames)
# and AAC (44.1 kHz mono) to /rec: ANNOUNCE, SETUP, RECORD, TEARDOWN.
BITEXACT="-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -threads 1"
SRC="-f lavfi -i testsrc=size=160x120:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 2"
ENC="$BITEXACT -c:v libx264 -g 25 -bf 0 -pix_fmt yuv420p -c:a aac"
record ffmpeg5_publish_tcp ffmpeg -hide_banner -loglevel error -re $SRC $ENC \
    -f rtsp -rtsp_transport tcp "rtsp://127.0.0.1:$PROXY/rec"
# The same encode into a file: what the publisher sent.
ffmpeg -hide_banner -loglevel error $SRC $ENC -f mpegts -y "$WORK/publish.ts"
count "$WORK/publish.ts"

# GStreamer's rtspclientsink publishing the same kind of stream (AAC goes as
# MP4A-LATM) for about 2.5 s, ended with SIGINT and -e (PAUSE, TEARDOWN);
# a tee keeps a copy of what it sent. It does not end by itself after EOS
# from num-buffers, hence the SIGINT.
record gst_rtspclientsink_publish_tcp for_seconds 2.5 gst-launch-1.0 -q -e \
    videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=25/1 \
    ! x264enc tune=zerolatency bitrate=150 key-int-max=25 bframes=0 ! h264parse ! tee name=tv \
    tv. ! queue ! s.sink_0 \
    rtspclientsink name=s location="rtsp://127.0.0.1:$PROXY/rec" protocols=tcp \
    audiotestsrc is-live=true ! audio/x-raw,rate=44100,channels=1 ! avenc_aac ! aacparse ! tee name=ta \
    ta. ! queue ! s.sink_1 \
    tv. ! queue ! mpegtsmux name=m ! filesink location="$WORK/clientsink.ts" ta. ! queue ! m.
count "$WORK/clientsink.ts"

kill "$SERVER"
wait "$SERVER" || die "gst_rtsp_server.py did not exit cleanly on SIGTERM"
SERVER=

# The RTP and RTCP in each capture, per interleaved channel.
python3 "$HERE/summary.py" -q "$HERE"/*.txt
