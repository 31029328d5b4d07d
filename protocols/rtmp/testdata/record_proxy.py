#!/usr/bin/env python3
"""A TCP proxy that records what an RTMP client sends to a server.

Usage: record_proxy.py LISTEN_PORT UPSTREAM_PORT OUT_FILE [--server-out FILE]

Accepts one connection on 127.0.0.1:LISTEN_PORT, connects to
127.0.0.1:UPSTREAM_PORT, relays both ways, and writes the client->server
bytes to OUT_FILE (and optionally the server->client bytes to FILE).
Exits when either side closes.
"""
import socket
import sys
import threading


def pump(src, dst, sink):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if sink is not None:
                sink.write(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    listen_port, upstream_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server_out = None
    if len(sys.argv) > 5 and sys.argv[4] == "--server-out":
        server_out = sys.argv[5]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(1)
    print("listening", flush=True)
    client, _ = ls.accept()
    upstream = socket.create_connection(("127.0.0.1", upstream_port))
    with open(out, "wb") as c2s:
        s2c = open(server_out, "wb") if server_out else None
        t1 = threading.Thread(target=pump, args=(client, upstream, c2s))
        t2 = threading.Thread(target=pump, args=(upstream, client, s2c))
        t1.start()
        t2.start()
        t1.join()
        t2.join()
        if s2c:
            s2c.close()


if __name__ == "__main__":
    main()
