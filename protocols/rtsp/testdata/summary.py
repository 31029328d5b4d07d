#!/usr/bin/env python3
"""Summarises record_proxy.py captures: each direction's bytes are joined and
split into RTSP messages (printed: first line and headers, body size) and
interleaved frames (`$`, channel, 16-bit length), which are counted per
channel: RTP packets, RTP packets with the marker bit set (for video, one per
frame), distinct RTP timestamps, and RTCP packet types.

usage: summary.py CAPTURE.txt...   (add -q for the counts only)
"""
import collections
import sys


def split(data):
    """Yields ('rtsp', bytes) and ('frame', channel, payload) in order."""
    i = 0
    while i < len(data):
        if data[i] == 0x24:  # '$'
            if i + 4 > len(data):
                yield ("partial", data[i:])
                return
            channel, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if i + 4 + length > len(data):
                yield ("partial", data[i:])
                return
            yield ("frame", channel, data[i + 4:i + 4 + length])
            i += 4 + length
            continue
        end = data.find(b"\r\n\r\n", i)
        if end < 0:
            yield ("partial", data[i:])
            return
        head = data[i:end + 4]
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        yield ("rtsp", data[i:end + 4 + length])
        i = end + 4 + length


def summarise(path, quiet):
    streams = {"c2s": bytearray(), "s2c": bytearray()}
    events = []
    for line in open(path):
        direction, micros, hexdata = line.split()
        events.append((direction, int(micros)))
        streams[direction] += bytes.fromhex(hexdata)
    print(f"== {path}: {len(events)} chunks, last at {events[-1][1] / 1e6:.3f} s")
    for direction, data in streams.items():
        rtp = collections.Counter()
        marked = collections.Counter()
        stamps = collections.defaultdict(set)
        rtcp = collections.defaultdict(collections.Counter)
        for item in split(bytes(data)):
            if item[0] == "rtsp":
                if not quiet:
                    text = item[1].decode("utf-8", "replace")
                    print(f"  {direction} " + text.replace("\r\n", "\n      ").rstrip())
            elif item[0] == "frame":
                channel, payload = item[1], item[2]
                kind = payload[1] if len(payload) > 1 else 0
                if 200 <= kind <= 206:
                    # An RTCP compound packet: name each packet's type.
                    j = 0
                    while j + 4 <= len(payload):
                        rtcp[channel][payload[j + 1]] += 1
                        j += 4 * (int.from_bytes(payload[j + 2:j + 4], "big") + 1)
                else:
                    rtp[channel] += 1
                    marked[channel] += payload[1] >> 7
                    stamps[channel].add(payload[4:8])
            else:
                print(f"  {direction} {len(item[1])} bytes left over at the end")
        for channel in sorted(set(rtp) | set(rtcp)):
            kinds = ", ".join(f"{k}x{n}" for k, n in sorted(rtcp[channel].items()))
            print(f"  {direction} channel {channel}: {rtp[channel]} RTP packets, "
                  f"{marked[channel]} with marker, {len(stamps[channel])} timestamps"
                  + (f"; RTCP {kinds}" if kinds else ""))


if __name__ == "__main__":
    quiet = "-q" in sys.argv
    for p in sys.argv[1:]:
        if p != "-q":
            summarise(p, quiet)
