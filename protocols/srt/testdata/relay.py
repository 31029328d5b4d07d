#!/usr/bin/env python3
"""UDP relay between an SRT caller and an SRT listener on 127.0.0.1 that
logs every datagram, one per line: `<direction> <hex>`, or with `timed`
`<direction> <microseconds since the first datagram> <hex>`, where direction
is `c2l` (caller to listener) or `l2c` (listener to caller).

usage: relay.py FRONT_PORT LISTENER_PORT LOG [IDLE_SECONDS [timed]]
"""
import select
import socket
import sys
import time

front_port, back_port, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
idle = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
timed = len(sys.argv) > 5 and sys.argv[5] == "timed"

front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind(("127.0.0.1", front_port))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
back.connect(("127.0.0.1", back_port))
caller = None
seen = False
t0 = None


def stamp():
    global t0
    if not timed:
        return ""
    now = time.monotonic_ns() // 1000
    if t0 is None:
        t0 = now
    return f"{now - t0} "


with open(log_path, "w") as log:
    while True:
        ready, _, _ = select.select([front, back], [], [], idle if seen else 30.0)
        if not ready:
            break
        for s in ready:
            if s is front:
                data, caller = front.recvfrom(65536)
                seen = True
                log.write("c2l " + stamp() + data.hex() + "\n")
                back.send(data)
            else:
                try:
                    data = back.recv(65536)
                except ConnectionRefusedError:
                    continue
                log.write("l2c " + stamp() + data.hex() + "\n")
                if caller is not None:
                    front.sendto(data, caller)
