//! A WebRTC peer: one str0m `Rtc` as a session of the kernel's contract,
//! a WHIP publisher (RFC 9725) or a WHEP player. Its datagrams come
//! through the endpoint; once ICE and DTLS are through it asks the host
//! to publish or play.
//!
//! A publisher's media, as str0m depacketized it, becomes canonical frames:
//! H.264 from Annex B to length prefixes with its parameter sets as the
//! track's configuration, Opus as it comes. A player gets the stream from
//! its GOP cache's key frame: H.264 back to Annex B with the parameter
//! sets before each key frame, Opus as it is; other codecs are not sent.
//!
//! str0m is drained until it returns a timeout after every input, as its
//! documentation requires. Its clock is `std::time::Instant`: the host's
//! microseconds are laid on a fixed origin, and only differences matter.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::{Action, LinkFigures, LinkReport};
use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::media::codec::h264::{nal_type, AvcConfig};
use arcly_core::media::codec::nal::AnnexBNals;
use arcly_core::media::codec::opus::OpusHead;
use arcly_core::media::codec::track_params;
use arcly_core::session::{
    Input, ProtocolError, ProtocolErrorKind, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, StreamRequest, Transmit,
};
use arcly_core::time::{Instant, MediaTime, Timescale};
use arcly_core::transcode::{AudioTranscoder, TranscoderFactory};
use bytes::{BufMut, Bytes, BytesMut};
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Output, Rtc};

/// Where the session timeline starts, in µs: a little room before the
/// first frame.
const LEAD_US: i64 = 1_000_000;

/// The least time between two key frame requests a player passes on.
const KEY_REQUEST_GAP: core::time::Duration = core::time::Duration::from_secs(1);
/// How long a publisher's first tracks wait for its video's parameter sets
/// ([`PeerSession::awaits_video`]).
const VIDEO_WAIT: core::time::Duration = core::time::Duration::from_secs(2);

/// How often the session looks at its end flag (a `DELETE`).
const FLAG_POLL_US: u64 = 1_000_000;

/// What went wrong in str0m, as text.
#[derive(Debug)]
struct WebRtcFailure(String);

impl core::fmt::Display for WebRtcFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebRtcFailure {}

/// Lays the host's microseconds on str0m's clock and back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock(pub(crate) std::time::Instant);

impl Clock {
    pub(crate) fn to_std(self, now: Instant) -> std::time::Instant {
        self.0 + core::time::Duration::from_micros(now.as_micros())
    }

    pub(crate) fn host_instant(self, t: std::time::Instant) -> Instant {
        Instant::from_micros(t.saturating_duration_since(self.0).as_micros() as u64)
    }
}

/// What a peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends media in (WHIP).
    Publish,
    /// Takes media out (WHEP).
    Play,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// ICE and DTLS under way.
    Connecting,
    /// Connected; the publish request is with the host.
    Asked(RequestId),
    /// Publishing, or playing.
    Publishing,
}

/// A media line a player sends on.
#[derive(Debug)]
struct OutLine {
    mid: Mid,
    video: bool,
}

/// One incoming track.
#[derive(Debug)]
struct InTrack {
    mid: Mid,
    id: TrackId,
    codec: CodecId,
    clock: u32,
    config: Option<Bytes>,
    /// `(RTP time of the first frame, session ticks it is placed at)`.
    anchor: Option<(u64, i64)>,
}

/// A WHIP publisher's session.
pub struct PeerSession {
    role: Role,
    rtc: Rtc,
    clock: Clock,
    app: String,
    stream: String,
    token: Option<String>,
    /// A user and password from the offer's `Authorization: Basic`.
    user: Option<String>,
    password: Option<String>,
    ended: Arc<AtomicBool>,
    state: State,
    next_id: u32,
    local: Option<SocketAddr>,
    /// The media lines the peer sends on.
    mids: Vec<Mid>,
    tracks: Vec<InTrack>,
    announced: TrackSet,
    /// The host instant of the first frame: the timeline's origin.
    started: Option<Instant>,
    out: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    wake: Option<Instant>,
    flag_due: Instant,
    closed: bool,
    /// Frames dropped while waiting for parameter sets.
    pub(crate) unconfigured: u64,
    /// A player's media lines, its tracks from the bus, and whether it
    /// waits for a key frame.
    out_lines: Vec<OutLine>,
    play_tracks: Option<Arc<TrackSet>>,
    wait_key: bool,
    /// Where the link figures go (with this peer's id), when next, and
    /// the datagrams and bytes each way.
    stats: Option<(crate::WebRtcStats, u64)>,
    stats_due: Instant,
    peer: Option<SocketAddr>,
    counts: LinkFigures,
    /// What this player gets less of (see [`LinkReport::notes`]), each
    /// told once in the log.
    notes: Vec<&'static str>,
    /// Where a player's audio transcoders come from, and the one at work:
    /// the source track it takes and the track it makes.
    transcoders: Option<TranscoderFactory>,
    transcoding: Option<Transcoding>,
    /// When a key frame may next be asked for: of the publisher's peer
    /// (a PLI), or of the stream for this player's peer.
    key_request_due: Instant,
}

/// A player's audio transcoder at work.
struct Transcoding {
    from: TrackId,
    to: TrackInfo,
    tx: Box<dyn AudioTranscoder>,
}

impl core::fmt::Debug for Transcoding {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transcoding")
            .field("from", &self.from)
            .field("to", &self.to.codec)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for PeerSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerSession")
            .field("app", &self.app)
            .field("stream", &self.stream)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl PeerSession {
    /// A publisher for `APP/STREAM` over `rtc`, which has taken the offer;
    /// `ended` set (by a `DELETE`) ends it.
    pub(crate) fn new(
        role: Role,
        rtc: Rtc,
        clock: Clock,
        app: String,
        stream: String,
        credentials: [Option<String>; 3],
        ended: Arc<AtomicBool>,
    ) -> Self {
        let [token, user, password] = credentials;
        PeerSession {
            role,
            rtc,
            clock,
            app,
            stream,
            token,
            user,
            password,
            ended,
            state: State::Connecting,
            next_id: 0,
            local: None,
            mids: Vec::new(),
            tracks: Vec::new(),
            announced: TrackSet::new(),
            started: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            wake: None,
            flag_due: Instant::ZERO,
            closed: false,
            unconfigured: 0,
            out_lines: Vec::new(),
            play_tracks: None,
            wait_key: true,
            stats: None,
            stats_due: Instant::ZERO,
            peer: None,
            counts: LinkFigures::default(),
            notes: Vec::new(),
            transcoders: None,
            transcoding: None,
            key_request_due: Instant::ZERO,
        }
    }

    /// Where this player gets a transcoder for audio WebRTC cannot carry.
    pub(crate) fn with_transcoder(mut self, t: Option<TranscoderFactory>) -> Self {
        self.transcoders = t;
        self
    }

    /// Tells the host, once per `note`, that this player gets less than
    /// the stream, and why.
    fn notice(&mut self, note: &'static str, text: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
            self.events.push_back(SessionEvent::Notice(format!(
                "playing {}/{}: {text}",
                self.app, self.stream
            )));
        }
    }

    /// Reports the peer's link figures to `stats` under `id`, at most
    /// once a second, for the stats API.
    pub(crate) fn with_stats(mut self, stats: crate::WebRtcStats, id: u64) -> Self {
        self.stats = Some((stats, id));
        self
    }

    /// Writes the link figures when due.
    fn report(&mut self, now: Instant) {
        let Some((stats, id)) = &self.stats else {
            return;
        };
        if now < self.stats_due || self.state != State::Publishing {
            return;
        }
        self.stats_due = now.saturating_add(core::time::Duration::from_secs(1));
        stats.update(LinkReport {
            protocol: "webrtc",
            id: *id,
            resource: format!("{}/{}", self.app, self.stream),
            publishing: self.role == Role::Publish,
            peer: self.peer.map(|p| p.to_string()).unwrap_or_default(),
            transport: "udp",
            notes: self.notes.clone(),
            figures: self.counts,
        });
    }

    /// The flag that ends the session when set.
    pub(crate) fn end_flag(&self) -> Arc<AtomicBool> {
        self.ended.clone()
    }

    fn finish(&mut self, end: SessionEnd) {
        if self.closed {
            return;
        }
        if self.state == State::Publishing {
            self.events.push_back(match self.role {
                Role::Publish => SessionEvent::PublishStopped,
                Role::Play => SessionEvent::PlayStopped,
            });
        }
        self.rtc.disconnect();
        self.closed = true;
        if let Some((stats, id)) = &self.stats {
            stats.remove(*id);
        }
        self.events.push_back(SessionEvent::Closed(end));
    }

    fn fail(&mut self, why: impl core::fmt::Display) {
        let err = ProtocolError::new(
            "webrtc",
            ProtocolErrorKind::Malformed,
            WebRtcFailure(why.to_string()),
        );
        self.finish(SessionEnd::Protocol(err));
    }

    /// Everything str0m has to say, until it names its next timeout.
    fn drain(&mut self, now: Instant) {
        while !self.closed {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => return self.fail(e),
            };
            match out {
                Output::Timeout(t) => {
                    self.wake = Some(self.clock.host_instant(t));
                    return;
                }
                Output::Transmit(t) => {
                    let data = Bytes::copy_from_slice(&t.contents);
                    self.counts.pkt_sent += 1;
                    self.counts.bytes_sent += data.len() as u64;
                    if is_client_hello(&data) {
                        // ffmpeg's WHIP muxer, the DTLS server by default,
                        // takes the first ClientHello as its sign that ICE
                        // is up and handshakes on the one that follows: it
                        // gets that one at once. A DTLS server takes a
                        // repeated ClientHello as the retransmission it may
                        // always be (RFC 6347 §4.2.4).
                        self.out
                            .push_back(Transmit::datagram(None, t.destination, data.clone()));
                    }
                    self.out
                        .push_back(Transmit::datagram(None, t.destination, data));
                }
                Output::Event(e) => self.event(now, e),
            }
        }
    }

    fn event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected if self.state == State::Connecting => {
                self.next_id += 1;
                let id = RequestId(self.next_id);
                self.state = State::Asked(id);
                self.events.push_back(SessionEvent::Request(StreamRequest {
                    id,
                    action: match self.role {
                        Role::Publish => Action::Publish,
                        Role::Play => Action::Play,
                    },
                    app: self.app.clone(),
                    stream: self.stream.clone(),
                    token: self.token.clone(),
                    user: self.user.clone(),
                    password: self.password.clone(),
                    digest: None,
                }));
            }
            Event::MediaAdded(m) => {
                self.mids.push(m.mid);
                self.out_lines.push(OutLine {
                    mid: m.mid,
                    video: m.kind == MediaKind::Video,
                });
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.finish(SessionEnd::Normal);
            }
            Event::MediaData(d)
                if self.state == State::Publishing && self.role == Role::Publish =>
            {
                self.media(now, d)
            }
            // The player's peer lost packets it cannot decode on: the
            // stream's publisher is asked for a key frame (at most once a
            // second), and the peer gets the next one anyway.
            Event::KeyframeRequest(_)
                if self.state == State::Publishing
                    && self.role == Role::Play
                    && now >= self.key_request_due =>
            {
                self.key_request_due = now.saturating_add(KEY_REQUEST_GAP);
                self.events.push_back(SessionEvent::KeyFrameWanted);
            }
            _ => {}
        }
    }

    /// The track for `d`'s media line, made on its first frame.
    fn track(&mut self, d: &MediaData) -> Option<usize> {
        if let Some(i) = self.tracks.iter().position(|t| t.mid == d.mid) {
            return Some(i);
        }
        let spec = d.params.spec();
        let (codec, config) = match spec.codec {
            Codec::H264 => (CodecId::H264, None),
            Codec::Opus => {
                let channels = spec.channels.unwrap_or(2);
                // WebRTC carries no pre-skip; players skip none.
                let head = OpusHead::new(channels, 0, spec.clock_rate.get());
                (CodecId::Opus, Some(head.to_bytes()))
            }
            _ => return None,
        };
        let taken = |id: u8| self.tracks.iter().any(|t| t.id.0 == id);
        let id = match codec {
            c if c.is_video() && !taken(0) => 0,
            c if c.is_audio() && !taken(1) => 1,
            _ => (2..=u8::MAX).find(|&i| !taken(i))?,
        };
        self.tracks.push(InTrack {
            mid: d.mid,
            id: TrackId(id),
            codec,
            clock: spec.clock_rate.get(),
            config,
            anchor: None,
        });
        Some(self.tracks.len() - 1)
    }

    fn media(&mut self, now: Instant, d: MediaData) {
        let Some(i) = self.track(&d) else { return };
        let arrival = self.clock.host_instant(d.network_time);
        let started = *self.started.get_or_insert(arrival.min(now));
        let t = &mut self.tracks[i];
        let (payload, key) = if t.codec == CodecId::H264 {
            let (payload, key, config) = h264_frame(Bytes::from(d.data));
            if let Some(c) = config {
                if t.config.as_ref() != Some(&c) {
                    t.config = Some(c);
                }
            }
            (payload, key)
        } else {
            (Bytes::from(d.data), true)
        };
        if t.config.is_none() {
            // No parameter sets yet: ask for a key frame, which brings them.
            self.unconfigured += 1;
            let mid = t.mid;
            if let Some(mut w) = self.rtc.writer(mid) {
                let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
            }
            return;
        }
        if payload.is_empty() {
            return;
        }
        let rtp = d.time.numer();
        let clock = i64::from(t.clock);
        let anchor = *t.anchor.get_or_insert_with(|| {
            let us = LEAD_US + arrival.saturating_duration_since(started).as_micros() as i64;
            (rtp, us * clock / 1_000_000)
        });
        let pts = anchor.1 + (rtp as i64 - anchor.0 as i64);
        let Some(ts) = Timescale::new(t.clock) else {
            return;
        };
        let (id, codec) = (t.id, t.codec);
        let frame = if codec.is_video() {
            MediaFrame::video(id, codec, key, MediaTime::new(pts, ts), payload)
        } else {
            MediaFrame::audio(id, codec, MediaTime::new(pts, ts), payload)
        };
        if self.announced.is_empty() && !codec.is_video() && self.awaits_video(now) {
            self.unconfigured += 1;
            return;
        }
        self.announce();
        self.events.push_back(SessionEvent::Frame(frame));
    }

    /// The peer sends video whose parameter sets have not come yet (they
    /// come with the key frame asked for), for at most [`VIDEO_WAIT`] from
    /// the first frame. The first tracks announced wait for it: audio
    /// alone first, then audio and video, would start the stream with an
    /// audio-only stretch and a discontinuity in every packaging.
    fn awaits_video(&self, now: Instant) -> bool {
        let sends_video = self.out_lines.iter().any(|l| l.video);
        let video_ready = self
            .tracks
            .iter()
            .any(|t| t.codec.is_video() && t.config.is_some());
        let waited = self.started.map_or(core::time::Duration::ZERO, |s| {
            now.saturating_duration_since(s)
        });
        sends_video && !video_ready && waited < VIDEO_WAIT
    }

    /// The tracks with a configuration, when they changed.
    fn announce(&mut self) {
        let mut set = TrackSet::new();
        for t in &self.tracks {
            let (Some(config), Some(ts)) = (&t.config, Timescale::new(t.clock)) else {
                continue;
            };
            let mut info = TrackInfo::new(t.id, t.codec, ts, config.clone());
            info.params = track_params(t.codec, config).unwrap_or_default();
            let _ = set.upsert(info);
        }
        if set != self.announced && !set.is_empty() {
            self.announced = set.clone();
            self.events.push_back(SessionEvent::Tracks(Box::new(set)));
        }
    }
}

impl PeerSession {
    /// A PLI to the publisher's peer on each of its video lines.
    fn ask_key_frame(&mut self, now: Instant) {
        let video: Vec<Mid> = self
            .out_lines
            .iter()
            .filter(|l| l.video)
            .map(|l| l.mid)
            .collect();
        for mid in video {
            if let Some(mut w) = self.rtc.writer(mid) {
                let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
            }
        }
        self.drain(now);
    }

    /// What of the stream this player cannot get as it is, told once: a
    /// video codec other than H.264, audio other than Opus (through a
    /// transcoder when the host has one).
    fn check_tracks(&mut self) {
        let Some(tracks) = self.play_tracks.clone() else {
            return;
        };
        for t in tracks.iter() {
            let c = t.codec;
            if matches!(c, CodecId::H264 | CodecId::Opus) {
                continue;
            }
            if c.is_video() {
                self.notice(
                    "no-video",
                    format!("its video is {}, which is not sent over WebRTC here (H.264 is): this player gets audio only", c.name()),
                );
                continue;
            }
            if self.transcoding.as_ref().is_some_and(|x| x.from == t.id) {
                continue;
            }
            let started = self
                .transcoders
                .as_ref()
                .and_then(|f| f.make(c, CodecId::Opus))
                .map(|mut tx| tx.start(t).map(|to| (tx, to)));
            match started {
                Some(Ok((tx, to))) => {
                    self.transcoding = Some(Transcoding { from: t.id, to, tx });
                    self.notice(
                        "audio-transcoded",
                        format!("its audio is {}, transcoded to Opus for this player", c.name()),
                    );
                }
                Some(Err(e)) => self.notice(
                    "no-audio",
                    format!("its audio is {}, which WebRTC does not carry, and the transcoder did not take it ({e}): this player gets video only", c.name()),
                ),
                None => self.notice(
                    "no-audio",
                    format!("its audio is {}, which WebRTC does not carry, and no transcoder to Opus is configured: this player gets video only", c.name()),
                ),
            }
        }
    }

    /// A frame from the bus to the player: audio WebRTC cannot carry
    /// through the transcoder when there is one, the rest as it is.
    fn play_frame(&mut self, now: Instant, f: &MediaFrame) {
        if f.codec.is_video() || f.codec == CodecId::Opus {
            return self.send_frame(now, f);
        }
        let Some(x) = self.transcoding.as_mut().filter(|x| x.from == f.track) else {
            return;
        };
        if let Err(e) = x.tx.push(f) {
            let codec = f.codec.name();
            self.transcoding = None;
            self.notes.retain(|n| *n != "audio-transcoded");
            return self.notice(
                "no-audio",
                format!("transcoding its {codec} audio stopped ({e}): this player gets video only"),
            );
        }
        let out: Vec<MediaFrame> = core::iter::from_fn(|| x.tx.poll()).collect();
        let to = x.to.codec;
        for o in out.iter().filter(|o| o.codec == to) {
            self.send_frame(now, o);
        }
    }

    /// A frame to the player: on the media line of its kind with the
    /// payload type negotiated for its codec.
    fn send_frame(&mut self, now: Instant, f: &MediaFrame) {
        let video = f.codec.is_video();
        if video && self.wait_key {
            if !f.is_key() {
                // Joined without a key frame in the cache (or fell behind):
                // the publisher is asked for one where it can make one.
                if now >= self.key_request_due {
                    self.key_request_due = now.saturating_add(KEY_REQUEST_GAP);
                    self.events.push_back(SessionEvent::KeyFrameWanted);
                }
                return;
            }
            self.wait_key = false;
        }
        let (codec, clock) = match f.codec {
            CodecId::H264 => (Codec::H264, 90_000),
            CodecId::Opus => (Codec::Opus, 48_000),
            _ => return,
        };
        let Some(mid) = self
            .out_lines
            .iter()
            .find(|l| l.video == video)
            .map(|l| l.mid)
        else {
            return;
        };
        let payload = if f.codec == CodecId::H264 {
            if f.pts != f.dts {
                self.notice(
                    "b-frames",
                    "its H.264 has B-frames, which browsers' WebRTC decoders cannot reorder: \
                     the gateway's player page decodes them itself where the browser has \
                     WebCodecs (HTTPS or localhost), other players may stutter; publish \
                     without B-frames (x264: -bf 0) for every player"
                        .into(),
                );
            }
            let config = self
                .play_tracks
                .as_ref()
                .and_then(|t| t.get(f.track))
                .map(|t| t.config.clone());
            match h264_annex_b(f, config) {
                Some(p) => p,
                None => return,
            }
        } else {
            f.payload.to_vec()
        };
        let Some(ts) = Timescale::new(clock) else {
            return;
        };
        let ticks = f.pts.rescale(ts).ticks.max(0) as u64;
        let wall = self.clock.to_std(now);
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return;
        };
        let freq = if clock == 90_000 {
            str0m::media::Frequency::NINETY_KHZ
        } else {
            str0m::media::Frequency::FORTY_EIGHT_KHZ
        };
        if let Err(e) = w.write(pt, wall, str0m::media::MediaTime::new(ticks, freq), payload) {
            return self.fail(e);
        }
        // str0m packetizes what was written (one frame per media line) as
        // time is handed in: hand it now, so a GOP cache's burst goes out
        // frame by frame instead of piling up.
        if let Err(e) = self.rtc.handle_input(str0m::Input::Timeout(wall)) {
            return self.fail(e);
        }
        self.drain(now);
    }
}

/// A canonical H.264 frame as Annex B for RTP, with the parameter sets of
/// `config` (avcC) before a key frame.
fn h264_annex_b(f: &MediaFrame, config: Option<Bytes>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(f.payload.len() + 64);
    if f.is_key() {
        if let Some(c) = config.and_then(|c| AvcConfig::parse(&c).ok()) {
            for ps in c.sps.iter().chain(&c.pps) {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(ps);
            }
        }
    }
    let body = arcly_core::media::codec::nal::length_prefixed_to_annex_b(f.payload.clone()).ok()?;
    out.extend_from_slice(&body);
    Some(out)
}

/// Whether a datagram is a DTLS record carrying a ClientHello (content
/// type 22, handshake type 1).
fn is_client_hello(d: &[u8]) -> bool {
    d.len() > 13 && d[0] == 22 && d[1] == 0xfe && d[13] == 1
}

/// An Annex B access unit as a canonical frame: the NAL units other than
/// parameter sets and delimiters, length-prefixed; whether it holds an IDR
/// slice; the configuration its parameter sets make, if it carries both.
fn h264_frame(au: Bytes) -> (Bytes, bool, Option<Bytes>) {
    let mut out = BytesMut::with_capacity(au.len() + 16);
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    let mut key = false;
    for nal in AnnexBNals::new(au) {
        match nal_type(&nal) {
            7 => sps.push(nal),
            8 => pps.push(nal),
            9 => {}
            t => {
                key |= t == 5;
                out.put_u32(nal.len() as u32);
                out.put_slice(&nal);
            }
        }
    }
    let config = (!sps.is_empty() && !pps.is_empty())
        .then(|| AvcConfig::from_parameter_sets(sps, pps).ok())
        .flatten()
        .map(|c| c.to_bytes());
    (out.freeze(), key, config)
}

impl Session for PeerSession {
    fn protocol(&self) -> &'static str {
        "webrtc"
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        if self.closed {
            return;
        }
        let Input::Datagram { from, local, data } = input else {
            return;
        };
        self.local = Some(local);
        self.peer = Some(from);
        self.counts.pkt_recv += 1;
        self.counts.bytes_recv += data.len() as u64;
        let Ok(r) = Receive::new(Protocol::Udp, from, local, &data) else {
            // Not STUN, DTLS or (S)RTP: dropped.
            return;
        };
        if let Err(e) = self
            .rtc
            .handle_input(str0m::Input::Receive(self.clock.to_std(now), r))
        {
            return self.fail(e);
        }
        self.drain(now);
        self.report(now);
    }

    fn handle_delivery(&mut self, now: Instant, delivery: DeliveryRef<'_>) {
        if self.closed || self.role != Role::Play || self.state != State::Publishing {
            return;
        }
        match delivery {
            DeliveryRef::Tracks(t) => {
                self.play_tracks = Some(t.clone());
                self.check_tracks();
            }
            DeliveryRef::Frame(f) => self.play_frame(now, f),
            DeliveryRef::Lagged { .. } => self.wait_key = true,
        }
    }

    fn handle_stream_end(&mut self, _now: Instant, why: RecvError) {
        // A player's stream is gone (its publisher did not come back in
        // the linger): the peer is told by the end of its media.
        if self.role == Role::Play {
            self.finish(match why {
                RecvError::Evicted { .. } => SessionEnd::Timeout,
                _ => SessionEnd::Normal,
            });
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if now >= self.flag_due {
            self.flag_due = now.saturating_add(core::time::Duration::from_micros(FLAG_POLL_US));
            if self.ended.load(Ordering::Relaxed) {
                return self.finish(SessionEnd::Normal);
            }
        }
        if let Err(e) = self
            .rtc
            .handle_input(str0m::Input::Timeout(self.clock.to_std(now)))
        {
            return self.fail(e);
        }
        self.drain(now);
        self.report(now);
    }

    fn accept(&mut self, now: Instant, id: RequestId) {
        if self.state == State::Asked(id) {
            self.state = State::Publishing;
            if self.role == Role::Play {
                return;
            }
            // Start from a key frame.
            self.ask_key_frame(now);
        }
    }

    fn handle_key_frame_request(&mut self, now: Instant) {
        // A player asked: the publisher's peer is sent a PLI on each video
        // line, at most twice a second.
        if self.closed
            || self.role != Role::Publish
            || self.state != State::Publishing
            || now < self.key_request_due
        {
            return;
        }
        self.key_request_due = now.saturating_add(KEY_REQUEST_GAP / 2);
        self.ask_key_frame(now);
    }

    fn reject(&mut self, _now: Instant, id: RequestId, why: Rejection) {
        if self.state == State::Asked(id) {
            self.finish(SessionEnd::Refused(why));
        }
    }

    fn close(&mut self, _now: Instant, _why: CloseReason) {
        self.finish(SessionEnd::Host);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        Some(self.wake.map_or(self.flag_due, |w| w.min(self.flag_due)))
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_core::frame::TrackId;
    use proptest::prelude::*;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0b, 0xac, 0xb2, 0x05, 0x08, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03,
        0x00, 0x80, 0x00, 0x00, 0x19, 0x07, 0x8a, 0x15, 0x24,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0];

    proptest! {
        /// A canonical frame out as Annex B (parameter sets before a key
        /// frame) and back in is the same frame, key flag and
        /// configuration included.
        #[test]
        fn h264_out_and_back_in_is_the_same_frame(
            key in any::<bool>(),
            nals in prop::collection::vec(
                (prop::sample::select(vec![1u8, 5, 6]), prop::collection::vec(1u8..=255, 1..300)),
                1..6,
            ),
        ) {
            let mut lp = Vec::new();
            for (t, body) in &nals {
                let t = if key { *t } else if *t == 5 { 1 } else { *t };
                lp.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
                lp.push(0x40 | t);
                lp.extend_from_slice(body);
            }
            let has_idr = key && nals.iter().any(|(t, _)| *t == 5);
            let config = AvcConfig::from_parameter_sets(
                vec![Bytes::from_static(SPS)],
                vec![Bytes::from_static(PPS)],
            )
            .expect("avcC")
            .to_bytes();
            let f = MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                has_idr,
                MediaTime::new(0, Timescale::new(90_000).expect("ts")),
                Bytes::from(lp.clone()),
            );
            let annex = h264_annex_b(&f, Some(config.clone())).expect("Annex B");
            let (payload, key_in, config_in) = h264_frame(Bytes::from(annex));
            prop_assert_eq!(&payload[..], &lp[..]);
            prop_assert_eq!(key_in, has_idr);
            prop_assert_eq!(config_in, has_idr.then_some(config));
        }

        /// Any bytes as an Annex B access unit: no panic, and what comes
        /// out is well formed length-prefixed NAL units.
        #[test]
        fn any_annex_b_is_taken_without_a_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let (payload, _, _) = h264_frame(Bytes::from(data));
            let mut at = 0;
            while at < payload.len() {
                prop_assert!(at + 4 <= payload.len());
                let n = u32::from_be_bytes([payload[at], payload[at + 1], payload[at + 2], payload[at + 3]]) as usize;
                at += 4 + n;
            }
            prop_assert_eq!(at, payload.len());
        }
    }
}
