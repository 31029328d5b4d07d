#!/usr/bin/env python3
"""aiortc as a WHEP player or a WHIP publisher, for the interop tests.

usage: aiortc_peer.py whep URL SECONDS
       aiortc_peer.py whip URL SECONDS

whep: offers to receive video and audio, plays for SECONDS, and prints one
JSON line: frames decoded per kind, the first and last video frame size,
the video times (pts in seconds) seen, and the HTTP status.

whip: sends aiortc's test video (a colour bar clip it synthesizes) and a
tone for SECONDS, then DELETEs the resource; prints the HTTP status.

ICE uses loopback host candidates only (no STUN server).
"""

import asyncio
import json
import sys
import time
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


def post(url, sdp):
    req = urllib.request.Request(
        url, data=sdp.encode(), headers={"Content-Type": "application/sdp"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), None


def delete(url):
    req = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def offer_answer(pc, url):
    await pc.setLocalDescription(await pc.createOffer())
    # aiortc gathers before it returns the offer: the SDP has candidates.
    status, answer, location = post(url, pc.localDescription.sdp)
    if status != 201:
        return status, None
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return status, location


async def whep(url, seconds):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    counts = {"video": 0, "audio": 0}
    video = {"pts": [], "size": None}
    tasks = []

    @pc.on("track")
    def on_track(track):
        async def read():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                counts[track.kind] += 1
                if track.kind == "video":
                    video["size"] = [frame.width, frame.height]
                    video["pts"].append(float(frame.pts * frame.time_base))

        tasks.append(asyncio.ensure_future(read()))

    status, location = await offer_answer(pc, url)
    if status == 201:
        await asyncio.sleep(seconds)
    await pc.close()
    for t in tasks:
        t.cancel()
    print(json.dumps({"status": status, "frames": counts, "size": video["size"],
                      "pts": video["pts"]}))


async def whip(url, seconds):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(AudioStreamTrack())
    status, location = await offer_answer(pc, url)
    if status == 201:
        await asyncio.sleep(seconds)
        base = url.split("/", 3)
        gone = delete(f"{base[0]}//{base[2]}{location}") if location else None
    else:
        gone = None
    await pc.close()
    print(json.dumps({"status": status, "deleted": gone}))


def main():
    mode, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    asyncio.run(whep(url, seconds) if mode == "whep" else whip(url, seconds))


if __name__ == "__main__":
    main()
