#!/usr/bin/python3
"""A reference RTSP server for the tests: GStreamer's gst-rtsp-server serving
live test patterns on 127.0.0.1, as an IP camera would.

usage: /usr/bin/python3 gst_rtsp_server.py [--port N] [--record] [--shared]

Mounts (each a live videotestsrc 320x240 at 25 fps with a GOP of 25, and a
live audiotestsrc sine):
  /h264aac        H.264 (x264enc zerolatency, no B-frames) + AAC (rtpmp4gpay)
  /h265           H.265 (x265enc zerolatency, no B-frames), video only
  /opus           H.264 + Opus
  /h264b          H.264 with 2 B-frames (x264enc, not zerolatency) + AAC
  /auth/h264aac   the same as /h264aac behind Digest auth, user `user`,
                  password `pass`; other mounts are open
  /rec            with --record only: takes ANNOUNCE/RECORD (any codecs
                  decodebin knows, two streams, e.g. ffmpeg's H.264 + AAC)
                  and throws the decoded media away

RTP over TCP (interleaved) and over UDP are both offered. Each client gets its
own pipeline (so its first frame is a keyframe) unless --shared is given.
Prints "ready" on stdout once listening; exits 0 on SIGTERM or SIGINT.
Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-rtsp,
gstreamer1.0-plugins-{base,good,bad,ugly} and gstreamer1.0-libav; run it
with /usr/bin/python3 (a pyenv python has no `gi`).
"""
import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

USER, PASSWORD = "user", "pass"
# Roles: a request without credentials gets the `anonymous` token, one with a
# good Digest answer the `user` token. Open mounts admit both, /auth/ only `user`.
ANONYMOUS = "anonymous"

VIDEO_RAW = (
    "videotestsrc is-live=true pattern=smpte "
    "! video/x-raw,width=320,height=240,framerate=25/1,format=I420"
)
AUDIO_RAW = (
    "audiotestsrc is-live=true wave=sine freq=440 samplesperbuffer=1024 "
    "! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1"
)
H264 = (
    "x264enc tune=zerolatency speed-preset=ultrafast bitrate=200 key-int-max=25 bframes=0 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay name=pay0 pt=96 config-interval=-1"
)
H264_BFRAMES = (
    "x264enc speed-preset=veryfast bitrate=200 key-int-max=25 bframes=2 b-adapt=false "
    "! video/x-h264,profile=main "
    "! rtph264pay name=pay0 pt=96 config-interval=-1"
)
H265 = (
    "x265enc tune=zerolatency speed-preset=ultrafast bitrate=200 key-int-max=25 "
    'option-string="bframes=0" '
    "! video/x-h265,profile=main "
    "! rtph265pay name=pay0 pt=96 config-interval=-1"
)
OPUS = "opusenc bitrate=32000 ! rtpopuspay name=pay1 pt=97"


def aac_encoder():
    """The first AAC encoder this GStreamer has, as a launch fragment."""
    for name, props in (("avenc_aac", "bitrate=64000"), ("fdkaacenc", "bitrate=64000"),
                        ("voaacenc", "bitrate=64000")):
        if Gst.ElementFactory.find(name) is not None:
            return f"{name} {props}"
    sys.exit("gst_rtsp_server.py: no AAC encoder (avenc_aac, fdkaacenc or voaacenc): "
             "install gstreamer1.0-libav")


def need(*elements):
    missing = [e for e in elements if Gst.ElementFactory.find(e) is None]
    if missing:
        sys.exit("gst_rtsp_server.py: missing GStreamer elements: " + ", ".join(missing))


def factory(launch, shared, roles=(ANONYMOUS, USER), record=False):
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(f"( {launch} )")
    f.set_shared(shared)
    f.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
    if record:
        f.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    # Who may see (describe) and use (construct) the media.
    # `access` lets a role learn that the mount exists (without it the answer
    # is 404 Not Found); `construct` lets it have the media (without it, 401
    # Unauthorized with a Digest challenge). Anonymous clients may always ask,
    # so that a client holding credentials gets its challenge.
    for role in (ANONYMOUS, USER):
        construct = "true" if role in roles else "false"
        f.add_role_from_structure(Gst.Structure.new_from_string(
            f"{role}, media.factory.access=(boolean)true, "
            f"media.factory.construct=(boolean){construct}"))
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--record", action="store_true", help="also serve /rec for ANNOUNCE/RECORD")
    ap.add_argument("--shared", action="store_true", help="one pipeline per mount for all clients")
    args = ap.parse_args()

    Gst.init(None)
    need("videotestsrc", "audiotestsrc", "x264enc", "x265enc", "opusenc", "rtph264pay",
         "rtph265pay", "rtpmp4gpay", "rtpopuspay", "decodebin", "fakesink")
    aac = f"{aac_encoder()} ! rtpmp4gpay name=pay1 pt=97"

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    anonymous = GstRtspServer.RTSPToken()
    anonymous.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ANONYMOUS)
    auth.set_default_token(anonymous)
    user = GstRtspServer.RTSPToken()
    user.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, USER)
    auth.add_digest(USER, PASSWORD, user)
    server.set_auth(auth)

    h264aac = f"{VIDEO_RAW} ! {H264} {AUDIO_RAW} ! {aac}"
    mounts = server.get_mount_points()
    mounts.add_factory("/h264aac", factory(h264aac, args.shared))
    mounts.add_factory("/h265", factory(f"{VIDEO_RAW} ! {H265}", args.shared))
    mounts.add_factory("/opus", factory(f"{VIDEO_RAW} ! {H264} {AUDIO_RAW} ! {OPUS}", args.shared))
    mounts.add_factory("/h264b", factory(f"{VIDEO_RAW} ! {H264_BFRAMES} {AUDIO_RAW} ! {aac}",
                                         args.shared))
    mounts.add_factory("/auth/h264aac", factory(h264aac, args.shared, roles=(USER,)))
    if args.record:
        mounts.add_factory("/rec", factory(
            "decodebin name=depay0 ! fakesink async=false "
            "decodebin name=depay1 ! fakesink async=false",
            False, record=True))

    if server.attach(None) == 0:
        sys.exit(f"gst_rtsp_server.py: cannot listen on 127.0.0.1:{args.port}")

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    # Drop sessions nobody has used for a while (GStreamer's own timeout).
    GLib.timeout_add_seconds(2, lambda: server.get_session_pool().cleanup() >= 0)
    print("ready", flush=True)
    loop.run()
    # Leave at once: tearing down live pipelines and client threads one by one
    # can take seconds, and nothing here needs saving.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
