#!/usr/bin/env python3
"""A TCP proxy that records both directions of one RTSP connection.

usage: record_proxy.py LISTEN_PORT UPSTREAM_PORT OUT_FILE [IDLE_SECONDS]

Accepts one connection on 127.0.0.1:LISTEN_PORT, connects to
127.0.0.1:UPSTREAM_PORT and relays both ways. Every recv() is written to
OUT_FILE as it is relayed, one line per chunk, in the order the proxy saw them:

    c2s <microseconds since the first chunk> <hex>    client to server
    s2c <microseconds since the first chunk> <hex>    server to client

(the shape of ../../srt/testdata/callers/*.txt). When one side closes, the
other is told (a half-close), and the proxy exits once both have closed, or
when IDLE_SECONDS (default 5) pass with one side closed and nothing heard from
the other. Prints "listening" on stdout once it accepts connections.
Adapted from ../../rtmp/testdata/record_proxy.py.
"""
import select
import socket
import sys
import time


def main():
    listen_port, upstream_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    idle = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(1)
    print("listening", flush=True)
    client, _ = ls.accept()
    ls.close()
    upstream = socket.create_connection(("127.0.0.1", upstream_port))
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = {client: upstream, upstream: client}
    name = {client: "c2s", upstream: "s2c"}
    open_ = [client, upstream]
    t0 = None
    with open(out, "w") as log:
        while open_:
            # Both open: wait for as long as it takes; one closed: give up on
            # the other after `idle` seconds of silence.
            ready, _, _ = select.select(open_, [], [], None if len(open_) == 2 else idle)
            if not ready:
                break
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    open_.remove(s)
                    try:
                        peer[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                now = time.monotonic_ns() // 1000
                if t0 is None:
                    t0 = now
                log.write(f"{name[s]} {now - t0} {data.hex()}\n")
                try:
                    peer[s].sendall(data)
                except OSError:
                    # The receiver is gone: nothing more can be relayed.
                    open_.clear()
                    break
    client.close()
    upstream.close()


if __name__ == "__main__":
    main()
