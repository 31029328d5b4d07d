#!/bin/sh
# Re-records the RESP captures in this folder: real clients talking to
# Debian's redis-server through ../../rtsp/testdata/record_proxy.py, which
# logs both directions of one TCP connection with their times.
#
#   redis_cli.txt        redis-cli (Debian redis-tools) sending commands whose
#                        replies cover every RESP2 type: simple strings,
#                        errors, integers, bulk strings (null, empty, 10 KB,
#                        with CR LF inside), arrays (null, empty, nested);
#                        redis-cli first asks COMMAND DOCS, whose answer is a
#                        large deeply nested array
#   redis_cli_big.txt    redis-cli reading back a 10 KB bulk string
#   gateway_origin.txt   the arcly gateway as an origin (--directory): a
#                        stream published for 8 s (SET with EX at once and at
#                        each refresh), then ended (the compare-and-delete EVAL)
#   gateway_edge.txt     the gateway as an edge: a player asks for a key
#                        another origin recorded (GET answered) and for one
#                        nobody has (GET answered null)
#
# Needs: redis-server and redis-cli (apt-get install redis-server), ffmpeg
# (libx264, aac), python3, cargo (builds the gateway). Uses 127.0.0.1 TCP
# ports 40900 (redis-server), 40901 (the proxy), 40910-40912 (gateways).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PROXY_PY="$ROOT/protocols/rtsp/testdata/record_proxy.py"
REDIS=40900
PROXY=40901

die() { echo "capture.sh: $*" >&2; exit 1; }
for need in redis-server:redis-server redis-cli:redis-tools ffmpeg:ffmpeg python3:python3 cargo:cargo; do
    tool=${need%%:*}
    command -v "$tool" > /dev/null || die "missing tool: $tool (apt-get install ${need#*:})"
done

WORK=$(mktemp -d)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2> /dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no > "$WORK/redis.log" &
PIDS="$PIDS $!"
i=0
until redis-cli -p $REDIS ping > /dev/null 2>&1; do
    i=$((i + 1)); [ $i -le 100 ] || die "redis-server did not start"; sleep 0.1
done

# proxy NAME: records the next connection to $PROXY into NAME.txt.
proxy() {
    python3 "$PROXY_PY" $PROXY $REDIS "$HERE/$1.txt" 2 > "$WORK/$1.proxy" &
    PROXY_PID=$!
    i=0
    until grep -q listening "$WORK/$1.proxy" 2> /dev/null; do
        i=$((i + 1)); [ $i -le 100 ] || die "the proxy did not start"; sleep 0.1
    done
}

# redis-cli: one connection, commands from stdin.
proxy redis_cli
redis-cli -p $PROXY > "$WORK/cli.out" <<'CMDS'
PING
SET live/k rtmp://10.0.0.1:1935 EX 15
GET live/k
GET live/missing
SET empty ""
GET empty
INCR counter
RPUSH list a b c
LRANGE list 0 -1
LRANGE nothing 0 -1
EVAL "return {1, {'x', 'y'}, redis.call('GET', KEYS[1])}" 1 live/k
EVAL "return nil" 0
EVAL "return redis.call('LRANGE', 'nothing', 0, -1)" 0
GET list
SET crlf "a\r\nb"
GET crlf
BLPOP nothing 0.01
CMDS
wait $PROXY_PID
# A 10 KB bulk string, stored straight and read back through the proxy.
proxy redis_cli_big
python3 -c "print('x' * 10240)" | redis-cli -p $REDIS -x SET big > /dev/null
redis-cli -p $PROXY GET big > /dev/null
wait $PROXY_PID

cargo build -q --manifest-path "$ROOT/Cargo.toml" -p arcly
ARCLY="${CARGO_TARGET_DIR:-$ROOT/target}/debug/arcly"
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine -t 8 \
    -c:v libx264 -g 30 -c:a aac "$WORK/in.flv"

# gateway ARGS...: a gateway on 127.0.0.1:40910 with only RTMP on.
gateway() {
    "$ARCLY" --rtmp 127.0.0.1:$1 --http off --rtsp off --srt off --webrtc off \
        --linger 0 --log info --directory redis://127.0.0.1:$2 "$3" "$4" > "$WORK/gw$1.log" 2>&1 &
    PIDS="$PIDS $!"
    i=0
    until grep -q "directory at" "$WORK/gw$1.log" 2> /dev/null; do
        i=$((i + 1)); [ $i -le 100 ] || die "the gateway did not start: $(cat "$WORK/gw$1.log")"; sleep 0.1
    done
}

# The origin: publish for 8 s (a refresh at 5 s), end, stop the gateway.
proxy gateway_origin
gateway 40910 $PROXY --advertise rtmp://127.0.0.1:40910
ffmpeg -v error -re -i "$WORK/in.flv" -c copy -f flv rtmp://127.0.0.1:40910/live/cam
sleep 1
kill "$(echo $PIDS | awk '{print $NF}')"
wait $PROXY_PID

# The edge: another origin (straight to redis-server) publishes live/cam; the
# edge, through the proxy, is asked for it and for live/none.
gateway 40911 $REDIS --advertise rtmp://127.0.0.1:40911
ORIGIN=$(echo $PIDS | awk '{print $NF}')
ffmpeg -v error -re -stream_loop -1 -i "$WORK/in.flv" -c copy -f flv rtmp://127.0.0.1:40911/live/cam &
PUB=$!
PIDS="$PIDS $PUB"
sleep 2
proxy gateway_edge
gateway 40912 $PROXY --edge-idle 2
EDGE=$(echo $PIDS | awk '{print $NF}')
ffmpeg -v error -rw_timeout 5000000 -i rtmp://127.0.0.1:40912/live/cam -frames:v 30 -f null -
ffmpeg -v error -rw_timeout 5000000 -i rtmp://127.0.0.1:40912/live/none -frames:v 1 -f null - 2> /dev/null || true
sleep 1
kill $EDGE
wait $PROXY_PID
kill $PUB $ORIGIN 2> /dev/null || true

for f in redis_cli redis_cli_big gateway_origin gateway_edge; do
    printf '%s: %s chunks client to server, %s server to client\n' "$f" \
        "$(grep -c '^c2s' "$HERE/$f.txt")" "$(grep -c '^s2c' "$HERE/$f.txt")"
done
