#!/usr/bin/env python3
"""An RTSP proxy for RTP/RTCP over UDP that loses datagrams on purpose.

usage: lossy_udp_relay.py LISTEN_PORT SERVER_PORT [--loss-c2s P] [--loss-s2c P]
                          [--seed N] [--idle SECONDS]

RTSP over UDP negotiates its port pairs in SETUP (client_port= in the request,
server_port= in the answer), and each peer binds its own ports, so a relay
cannot simply sit on one of them (../../srt/testdata/relay.py relays one fixed
port and loses nothing). This proxy therefore carries the RTSP connection too:
it accepts one connection on 127.0.0.1:LISTEN_PORT, connects to
127.0.0.1:SERVER_PORT, and rewrites each SETUP so that

  - the server is told client_port=X-X+1, a pair this proxy binds, and
  - the client is told server_port=Y-Y+1, another pair this proxy binds,

then relays datagrams X <-> server and Y <-> client, dropping each with
probability P per direction (c2s: client to server, s2c: server to client),
from a seeded random generator so that a run can be repeated. RTP over TCP
(interleaved) and everything else pass through untouched. When both sides of
the RTSP connection have closed (or one has, and IDLE seconds pass), it prints
what it relayed and dropped, per direction, on stderr and exits.
Prints "listening" on stdout once it accepts connections.

Example, 10 % of the server's RTP and RTCP lost on the way to ffmpeg:
  lossy_udp_relay.py 40811 40800 --loss-s2c 0.1 --seed 1 &
  ffmpeg -rtsp_transport udp -i rtsp://127.0.0.1:40811/h264aac -t 5 -f null -
"""
import argparse
import random
import re
import select
import socket
import sys

TRANSPORT = re.compile(rb"^(transport:[^\r\n]*)", re.I | re.M)


def bind_pair():
    """Two UDP sockets on 127.0.0.1, an even port and the next one."""
    probe = random.Random()
    for _ in range(200):
        port = probe.randrange(20000, 60000, 2)
        pair = []
        try:
            for p in (port, port + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                pair.append(s)
                s.bind(("127.0.0.1", p))
            return port, pair
        except OSError:
            for s in pair:
                s.close()
    sys.exit("lossy_udp_relay.py: no free UDP port pair")


def ports(transport, name):
    m = re.search(rb";" + name + rb"=(\d+)(?:-(\d+))?", transport, re.I)
    if not m:
        return None
    first = int(m.group(1))
    return first, int(m.group(2)) if m.group(2) else first + 1


def replace_ports(transport, name, pair):
    return re.sub(rb"(;" + name + rb"=)\d+(?:-\d+)?", rb"\g<1>%d-%d" % pair, transport,
                  flags=re.I)


class Relay:
    def __init__(self, args):
        self.loss = {"c2s": args.loss_c2s, "s2c": args.loss_s2c}
        self.rng = random.Random(args.seed)
        self.stats = {d: {"relayed": 0, "dropped": 0} for d in ("c2s", "s2c")}
        # socket -> (socket to send from, destination, direction)
        self.routes = {}
        # CSeq of a SETUP request -> (client's pair, our server-facing pair, sockets)
        self.pending = {}

    def setup_request(self, message):
        """Rewrites client_port= in a SETUP request; returns the message."""
        if not message.upper().startswith(b"SETUP "):
            return message
        m = TRANSPORT.search(message)
        cseq = re.search(rb"^cseq:\s*(\d+)", message, re.I | re.M)
        client = m and ports(m.group(1), rb"client_port")
        if not client or not cseq:
            return message
        x, toward_server = bind_pair()
        self.pending[cseq.group(1)] = (client, (x, x + 1), toward_server)
        return message.replace(m.group(1), replace_ports(m.group(1), rb"client_port", (x, x + 1)))

    def setup_answer(self, message):
        """Rewrites server_port= (and client_port= back) in a SETUP answer."""
        cseq = re.search(rb"^cseq:\s*(\d+)", message, re.I | re.M)
        m = TRANSPORT.search(message)
        if not cseq or cseq.group(1) not in self.pending or not m:
            return message
        client, ours, toward_server = self.pending.pop(cseq.group(1))
        server = ports(m.group(1), rb"server_port")
        if not server:
            return message
        y, toward_client = bind_pair()
        for i in (0, 1):
            # What the server sends to X goes from Y to the client, and back.
            self.routes[toward_server[i]] = (toward_client[i], ("127.0.0.1", client[i]), "s2c")
            self.routes[toward_client[i]] = (toward_server[i], ("127.0.0.1", server[i]), "c2s")
        t = replace_ports(m.group(1), rb"server_port", (y, y + 1))
        t = replace_ports(t, rb"client_port", client)
        print(f"lossy_udp_relay.py: client {client} <-> us {(y, y + 1)} | us {ours} <-> "
              f"server {server}", file=sys.stderr, flush=True)
        return message.replace(m.group(1), t)

    def datagram(self, s):
        data = s.recv(65536)
        out, dest, direction = self.routes[s]
        if self.loss[direction] and self.rng.random() < self.loss[direction]:
            self.stats[direction]["dropped"] += 1
            return
        self.stats[direction]["relayed"] += 1
        try:
            out.sendto(data, dest)
        except OSError:
            pass


def messages(buffer):
    """Splits complete RTSP messages and interleaved frames off the buffer."""
    out = []
    while buffer:
        if buffer[0] == 0x24:  # '$': an interleaved frame
            if len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[2:4], "big"):
                break
            n = 4 + int.from_bytes(buffer[2:4], "big")
        else:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = re.search(rb"^content-length:\s*(\d+)", buffer[:end], re.I | re.M)
            n = end + 4 + (int(length.group(1)) if length else 0)
            if len(buffer) < n:
                break
        out.append(bytes(buffer[:n]))
        del buffer[:n]
    return out


def main():
    ap = argparse.ArgumentParser(description="An RTSP proxy for RTP/RTCP over UDP that loses "
                                 "datagrams on purpose; see the top of this file.")
    ap.add_argument("listen_port", type=int)
    ap.add_argument("server_port", type=int)
    ap.add_argument("--loss-c2s", type=float, default=0.0)
    ap.add_argument("--loss-s2c", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--idle", type=float, default=5.0)
    args = ap.parse_args()
    relay = Relay(args)

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.listen_port))
    ls.listen(1)
    print("listening", flush=True)
    client, _ = ls.accept()
    ls.close()
    server = socket.create_connection(("127.0.0.1", args.server_port))
    peer = {client: server, server: client}
    rewrite = {client: relay.setup_request, server: relay.setup_answer}
    buffers = {client: bytearray(), server: bytearray()}
    open_ = [client, server]
    while open_:
        ready, _, _ = select.select(open_ + list(relay.routes), [], [],
                                    None if len(open_) == 2 else args.idle)
        if not ready:
            break
        for s in ready:
            if s in relay.routes:
                relay.datagram(s)
                continue
            if s not in open_:
                continue
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
            buffers[s] += data
            try:
                for message in messages(buffers[s]):
                    peer[s].sendall(rewrite[s](message))
            except OSError:
                open_.clear()
    for direction, n in relay.stats.items():
        print(f"lossy_udp_relay.py: {direction}: {n['relayed']} datagrams relayed, "
              f"{n['dropped']} dropped", file=sys.stderr)


if __name__ == "__main__":
    main()
