#!/usr/bin/env python3
"""Keep the datagrams the crypto tests need from a relay.py log.

usage: extract.py RELAY_LOG CALLER_OUTPUT OUT_BASE TITLE [DATA_PACKETS [HANDSHAKES]]

Writes OUT_BASE.txt (the handshake conclusions carrying KMREQ/KMRSP, or the
rejection that answers them, then the first DATA_PACKETS encrypted data
packets) and, when the caller delivered anything, OUT_BASE.plain.ts (what the
caller wrote out for those data packets: their plaintext payloads).
"""
import struct
import sys

log, caller_out, base, title = sys.argv[1:5]
want = int(sys.argv[5]) if len(sys.argv) > 5 else 5
max_hs = int(sys.argv[6]) if len(sys.argv) > 6 else 1 << 30
hs = 0
lines, data, payload_len = [], 0, 0
for line in open(log):
    d, h = line.split()
    b = bytes.fromhex(h)
    w0 = struct.unpack(">I", b[:4])[0]
    if w0 & 0x80000000:
        kind = (w0 >> 16) & 0x7FFF
        if kind != 0 or len(b) < 64:
            continue
        hs_type = struct.unpack(">I", b[16 + 20:16 + 24])[0]
        if hs >= max_hs:
            continue
        if hs_type == 0xFFFFFFFF:  # conclusion
            lines.append((d, b, "handshake conclusion"))
            hs += 1
        elif hs_type >= 1000:  # a rejection code
            lines.append((d, b, f"handshake rejection {hs_type}"))
            hs += 1
    else:
        kk = (struct.unpack(">I", b[4:8])[0] >> 27) & 3
        if kk and data < want:
            lines.append((d, b, f"data seq {w0} kk {kk}"))
            payload_len += len(b) - 16
            data += 1
with open(base + ".txt", "w") as f:
    f.write(f"# {title}\n# direction (c2l = caller to listener, l2c = listener to caller), then the datagram in hex\n")
    for d, b, what in lines:
        f.write(f"# {what}\n{d} {b.hex()}\n")
if data:
    plain = open(caller_out, "rb").read()[:payload_len]
    assert len(plain) == payload_len, "caller delivered less than the kept data packets"
    open(base + ".plain.ts", "wb").write(plain)
print(base, len(lines), "datagrams,", data, "data packets,", payload_len, "payload bytes")
