//! Real callers' captures (`testdata/callers/`: ffmpeg 5.1, libsrt's
//! srt-live-transmit and GStreamer publishing to and playing from the
//! gateway) replayed against the listener at their recorded times.
//!
//! Only what the listener chose differs between the capture and the replay:
//! its SYN cookie and its socket id. The replay puts ours where the capture
//! has the recorded ones; every other byte is the caller's.

use core::net::SocketAddr;
use std::time::Duration;

use arcly_core::bus::Delivery;
use arcly_core::endpoint::EndpointHost;
use arcly_core::engine::{Engine, Player, Publisher, Request, StreamKey};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::ts::TsDemuxer;
use arcly_core::session::ConnContext;
use arcly_core::time::Instant;
use bytes::{Bytes, BytesMut};

use crate::handshake::{Handshake, HsType};
use crate::packet::{Control, ControlPacket, Packet};
use crate::{SessionInfo, SrtConfig, SrtEndpoint};

/// One datagram of a capture.
struct Line {
    /// From the caller to the listener.
    c2l: bool,
    /// Microseconds since the capture's first datagram.
    at: u64,
    data: Vec<u8>,
}

/// Reads a capture (`c2l|l2c <microseconds> <hex>` lines).
fn capture(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut w = l.split(' ');
            let dir = w.next().expect("direction");
            let at = w.next().expect("time").parse().expect("microseconds");
            let hex = w.next().expect("datagram");
            let data = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            Line {
                c2l: dir == "c2l",
                at,
                data,
            }
        })
        .collect()
}

fn parse(d: &[u8]) -> Option<Packet> {
    Packet::parse(Bytes::copy_from_slice(d)).ok()
}

fn handshake(d: &[u8]) -> Option<Handshake> {
    match parse(d)? {
        Packet::Control(ControlPacket {
            control: Control::Handshake(h),
            ..
        }) => Some(h),
        _ => None,
    }
}

/// The data packets' payloads in sequence order, each once.
fn payloads<'a>(packets: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut v: Vec<(u32, Bytes)> = packets
        .filter_map(|d| match parse(d)? {
            Packet::Data(p) => Some((p.seq.get(), p.payload)),
            Packet::Control(_) => None,
        })
        .collect();
    // The captures are short: no sequence wrap inside one.
    v.sort_by_key(|(s, _)| *s);
    v.dedup_by_key(|(s, _)| *s);
    v.into_iter().flat_map(|(_, p)| p.to_vec()).collect()
}

/// The tracks and frames of an MPEG-TS stream.
pub(crate) fn demux(ts: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
    TsDemuxer::read_all(ts)
}

const CALLER: u16 = 50_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A paced source: frames published at their own times from `start`.
struct Source {
    publisher: Publisher,
    frames: Vec<MediaFrame>,
    next: usize,
    first_dts: i64,
    start: Instant,
}

impl Source {
    fn feed(&mut self, now: Instant) {
        while let Some(f) = self.frames.get(self.next) {
            let due = self.start.as_micros() + (f.dts.as_micros() - self.first_dts) as u64;
            if due > now.as_micros() {
                break;
            }
            let _ = self.publisher.publish(now, f.clone());
            self.next += 1;
        }
    }
}

/// What a replay saw.
#[derive(Default)]
struct Seen {
    /// Everything the listener sent, parsed.
    sent: Vec<Packet>,
    /// The listener's data packets as sent.
    sent_data: Vec<Vec<u8>>,
    /// Frames a player of the published stream received.
    played: Vec<MediaFrame>,
    /// The sessions that ended, with their last figures.
    ended: Vec<(u32, SessionInfo)>,
    /// The log lines of the host.
    log: Vec<String>,
    bad_cookies: u64,
}

struct Replay {
    hub: Engine,
    host: EndpointHost<SrtEndpoint>,
    now: Instant,
    source: Option<Source>,
    /// The stream a player watches (the one the capture publishes).
    watch: Option<StreamKey>,
    player: Option<Player>,
    seen: Seen,
    /// The cookie and socket id the recorded listener chose, and ours.
    rec_cookie: Option<u32>,
    rec_id: Option<u32>,
    our_cookie: Option<u32>,
    our_id: Option<u32>,
}

impl Replay {
    fn new() -> Self {
        let hub = Engine::default();
        let host = EndpointHost::new(
            SrtEndpoint::new(SrtConfig::default(), [3; 32]),
            hub.clone(),
            ConnContext::default(),
        );
        let start = Instant::from_millis(1);
        Replay {
            hub,
            host,
            now: start,
            source: None,
            watch: None,
            player: None,
            seen: Seen::default(),
            rec_cookie: None,
            rec_id: None,
            our_cookie: None,
            our_id: None,
        }
    }

    /// Publishes the committed ffmpeg MPEG-TS sample to `live/STREAM`, paced
    /// from now on.
    fn publish_sample(&mut self, stream: &str) {
        let (tracks, frames) = crate::e2e_tests::sample();
        let key = StreamKey::new("live", stream).expect("key");
        let mut publisher = self
            .hub
            .publish(&Request::new(key, "sample"), self.now)
            .expect("publish");
        publisher.set_tracks(tracks);
        self.source = Some(Source {
            publisher,
            first_dts: frames.first().map(|f| f.dts.as_micros()).unwrap_or(0),
            frames,
            next: 0,
            start: self.now,
        });
    }

    /// Runs the host's timers, the source and the player up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let mut next = until.min(self.now + Duration::from_millis(5));
            if let Some(t) = self.host.poll_timeout() {
                next = next.min(t);
            }
            self.now = next.max(self.now);
            if let Some(s) = self.source.as_mut() {
                s.feed(self.now);
            }
            self.host.handle_timeout(self.now);
            let _ = self.host.poll_deliveries(self.now);
            self.drain();
            if self.now >= until {
                return;
            }
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.host.poll_transmit() {
            assert_eq!(t.to, Some(addr(CALLER)), "answers go to the caller");
            if let Some(h) = handshake(&t.data) {
                match h.hs_type {
                    HsType::Induction => self.our_cookie = Some(h.cookie),
                    HsType::Conclusion => self.our_id = Some(h.socket_id),
                    _ => {}
                }
            }
            let p = parse(&t.data).expect("the listener sends what it parses");
            if matches!(p, Packet::Data(_)) {
                self.seen.sent_data.push(t.data.to_vec());
            }
            self.seen.sent.push(p);
        }
        while let Some(l) = self.host.poll_log() {
            self.seen.log.push(l);
        }
        self.seen
            .ended
            .extend(self.host.endpoint().session_stats().take_ended());
        if self.player.is_none() {
            if let Some(k) = self.watch.clone() {
                self.player = self.hub.play(&Request::new(k, "player")).ok();
            }
        }
        if let Some(p) = self.player.as_mut() {
            while let Ok(d) = p.subscription.try_recv() {
                if let Delivery::Frame(f) = d {
                    self.seen.played.push(f);
                }
            }
        }
    }

    /// The recorded listener's choices, read from its recorded answers.
    fn learn(&mut self, l: &Line) {
        if let Some(h) = handshake(&l.data) {
            match h.hs_type {
                HsType::Induction => self.rec_cookie = Some(h.cookie),
                HsType::Conclusion => self.rec_id = Some(h.socket_id),
                _ => {}
            }
        }
    }

    /// The caller's datagram with our cookie and socket id for the recorded.
    fn patch(&self, d: &[u8]) -> BytesMut {
        let mut d = BytesMut::from(d);
        let word = |d: &BytesMut, at: usize| {
            d.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        if let (Some(rec), Some(ours)) = (self.rec_id, self.our_id) {
            if word(&d, 12) == Some(rec) {
                d[12..16].copy_from_slice(&ours.to_be_bytes());
            }
        }
        let conclusion = d.len() >= 64 && d[0] & 0x80 != 0 && word(&d, 0) == Some(0x8000_0000);
        if conclusion && word(&d, 36) == Some(0xFFFF_FFFF) {
            if let (Some(rec), Some(ours)) = (self.rec_cookie, self.our_cookie) {
                if word(&d, 44) == Some(rec) {
                    d[44..48].copy_from_slice(&ours.to_be_bytes());
                }
            }
        }
        d
    }

    /// Feeds every caller datagram at its time, then runs `tail` on.
    fn play_capture(&mut self, lines: &[Line], tail: Duration) {
        let base = self.now;
        for l in lines {
            let at = base + Duration::from_micros(l.at);
            if !l.c2l {
                self.learn(l);
                continue;
            }
            self.run_until(at);
            let data = self.patch(&l.data);
            self.host
                .handle_datagram(self.now, addr(8890), addr(CALLER), data);
            self.drain();
        }
        let end = self.now + tail;
        self.run_until(end);
        self.seen.bad_cookies = self.host.endpoint().counts().bad_cookies;
    }
}

fn count(sent: &[Packet], what: impl Fn(&Control) -> bool) -> usize {
    sent.iter()
        .filter(|p| matches!(p, Packet::Control(c) if what(&c.control)))
        .count()
}

/// A caller's publish, replayed: the session ends on the caller's shutdown
/// with every data packet received and none lost, and a player of the
/// stream gets exactly the frames the caller's MPEG-TS carries (`probed`:
/// its video and audio packets as `ffprobe -count_packets` counts them).
fn replay_publish(text: &str, stream: &str, probed: (usize, usize)) {
    let lines = capture(text);
    let mut r = Replay::new();
    r.watch = Some(StreamKey::new("live", stream).expect("key"));
    r.play_capture(&lines, Duration::from_secs(1));
    let seen = &r.seen;
    assert_eq!(seen.bad_cookies, 0, "{:?}", seen.log);
    let rejected = seen.sent.iter().any(|p| {
        matches!(p, Packet::Control(ControlPacket { control: Control::Handshake(h), .. })
            if matches!(h.hs_type, HsType::Rejection(_)))
    });
    assert!(!rejected, "{:?}", seen.log);
    let sent_by_caller: Vec<&[u8]> = lines
        .iter()
        .filter(|l| l.c2l)
        .map(|l| &l.data[..])
        .collect();
    let data_packets = sent_by_caller
        .iter()
        .filter(|d| matches!(parse(d), Some(Packet::Data(_))))
        .count();
    let [(_, info)] = &seen.ended[..] else {
        panic!("one session ended: {:?} {:?}", seen.ended, seen.log);
    };
    assert!(info.publishing);
    assert_eq!(info.resource, format!("live/{stream}"));
    assert_eq!(info.stats.pkt_recv as usize, data_packets, "{info}");
    assert_eq!(info.stats.pkt_recv_loss, 0, "{info}");
    assert_eq!(info.stats.pkt_recv_drop, 0, "{info}");
    assert!(
        count(&seen.sent, |c| matches!(c, Control::Ack { .. })) >= 10,
        "the listener acknowledges"
    );
    let (tracks, want) = demux(&payloads(sent_by_caller.iter().copied()));
    let video_track = tracks.video().expect("a video track").id;
    let video = |f: &&MediaFrame| f.track == video_track;
    let video_frames = want.iter().filter(video).count();
    assert_eq!(
        (video_frames, want.len() - video_frames),
        probed,
        "the capture's video and audio frames, as ffprobe counts them"
    );
    // A player starts at the first key frame: audio before it is in no GOP.
    let first_key = want
        .iter()
        .position(|f| f.track == video_track && f.is_key())
        .expect("a key frame");
    let want = &want[first_key..];
    let fmt = |v: &[MediaFrame]| {
        v.iter()
            .map(|f| format!("{}:{}:{}", f.track.0, f.dts.as_micros(), f.payload.len()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        seen.played.len(),
        want.len(),
        "frames played\n{}\n{}",
        fmt(&seen.played),
        fmt(want)
    );
    for (g, w) in seen.played.iter().zip(want) {
        assert_eq!(g.track, w.track);
        assert_eq!(g.payload, w.payload);
        assert_eq!(g.is_key(), w.is_key());
    }
}

/// A caller's play, replayed: the listener accepts it, sends MPEG-TS whose
/// frames are the published stream's from a key frame on, answers every
/// full ACK with an ACKACK, and ends the session on the caller's shutdown.
fn replay_play(text: &str) {
    let lines = capture(text);
    let mut r = Replay::new();
    r.publish_sample("src");
    r.run_until(r.now + Duration::from_millis(500));
    r.play_capture(&lines, Duration::from_millis(500));
    let seen = &r.seen;
    assert_eq!(seen.bad_cookies, 0, "{:?}", seen.log);
    let [(_, info)] = &seen.ended[..] else {
        panic!("one session ended: {:?} {:?}", seen.ended, seen.log);
    };
    assert!(!info.publishing);
    assert_eq!(info.resource, "live/src");
    let acks = lines
        .iter()
        .filter(|l| l.c2l)
        .filter(|l| {
            matches!(parse(&l.data), Some(Packet::Control(ControlPacket {
                control: Control::Ack { info, .. }, ..
            })) if !info.light)
        })
        .count();
    let ackacks = count(&seen.sent, |c| matches!(c, Control::AckAck { .. }));
    assert!(acks > 10, "the capture has the caller's ACKs");
    assert_eq!(ackacks, acks, "every full ACK gets its ACKACK");
    let (_, got) = demux(&payloads(seen.sent_data.iter().map(|d| &d[..])));
    assert!(got.len() >= 40, "frames sent: {}", got.len());
    assert!(got[0].is_key(), "the player starts at a key frame");
    let sample = &r.source.as_ref().expect("source").frames;
    let at = sample
        .iter()
        .position(|f| f.track == got[0].track && f.payload == got[0].payload)
        .expect("the first frame sent is the sample's");
    for (g, w) in got.iter().zip(&sample[at..]) {
        assert_eq!(g.track, w.track);
        assert_eq!(g.payload, w.payload);
    }
}

#[test]
fn ffmpeg_publish_replays_frame_exact() {
    replay_publish(
        include_str!("../testdata/callers/ffmpeg5_publish.txt"),
        "ffmpeg",
        (50, 85),
    );
}

#[test]
fn srt_live_transmit_publish_replays_frame_exact() {
    replay_publish(
        include_str!("../testdata/callers/slt_publish.txt"),
        "slt",
        (50, 95),
    );
}

#[test]
fn gstreamer_publish_replays_frame_exact() {
    replay_publish(
        include_str!("../testdata/callers/gst_publish.txt"),
        "gst",
        (50, 95),
    );
}

#[test]
fn ffmpeg_play_replays() {
    replay_play(include_str!("../testdata/callers/ffmpeg5_play.txt"));
}

#[test]
fn srt_live_transmit_play_replays() {
    replay_play(include_str!("../testdata/callers/slt_play.txt"));
}

#[test]
fn gstreamer_play_replays() {
    replay_play(include_str!("../testdata/callers/gst_play.txt"));
}
