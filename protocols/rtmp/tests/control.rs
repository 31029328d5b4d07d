//! Protocol control as the specification and real peers require it:
//! acknowledgements at the peer's window, ping answers, abort, chunk sizes,
//! peer bandwidth, and connect's answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::session::{Input, Session, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::amf0::{self, Amf0Value};
use arcly_rtmp::chunk::{ChunkDecoder, ChunkEncoder};
use arcly_rtmp::handshake::PACKET_SIZE;
use arcly_rtmp::message::{RtmpMessage, UserControl};
use arcly_rtmp::{RtmpConfig, ServerSession};
use bytes::BytesMut;

struct Peer {
    s: ServerSession,
    enc: ChunkEncoder,
    dec: ChunkDecoder,
    from_server: BytesMut,
    handshake_seen: bool,
}

impl Peer {
    fn new() -> Peer {
        let mut p = Peer {
            s: ServerSession::new(RtmpConfig::default(), Instant::ZERO),
            enc: ChunkEncoder::new(),
            dec: ChunkDecoder::new(1 << 20, 64),
            from_server: BytesMut::new(),
            handshake_seen: false,
        };
        let mut hs = vec![3u8];
        hs.resize(1 + 2 * PACKET_SIZE, 0);
        p.raw(&hs);
        p
    }

    fn raw(&mut self, b: &[u8]) {
        self.s
            .handle_input(Instant::ZERO, Input::Stream(BytesMut::from(b)));
        while let Some(t) = self.s.poll_transmit() {
            self.from_server.extend_from_slice(&t.data);
        }
    }

    fn send(&mut self, csid: u32, stream: u32, m: &RtmpMessage) {
        let (t, body) = m.encode();
        let mut out = BytesMut::new();
        self.enc.write(&mut out, csid, stream, 0, t, &[&body]);
        self.raw(&out);
    }

    fn received(&mut self) -> Vec<RtmpMessage> {
        if !self.handshake_seen && self.from_server.len() > 2 * PACKET_SIZE {
            let _ = self.from_server.split_to(1 + 2 * PACKET_SIZE);
            self.handshake_seen = true;
        }
        let mut out = Vec::new();
        while let Some(m) = self.dec.read(&mut self.from_server).unwrap() {
            let m = RtmpMessage::decode(&m, 16).unwrap();
            if let RtmpMessage::SetChunkSize(n) = m {
                self.dec.set_chunk_size(n).unwrap();
            }
            out.push(m);
        }
        out
    }

    fn connect(&mut self, app: &str) -> Vec<RtmpMessage> {
        self.send(
            3,
            0,
            &RtmpMessage::Command(vec![
                amf0::string("connect"),
                Amf0Value::Number(1.0),
                amf0::object([
                    ("app", amf0::string(app)),
                    ("objectEncoding", Amf0Value::Number(3.0)),
                ]),
            ]),
        );
        self.received()
    }
}

#[test]
fn connect_answer_is_what_clients_expect() {
    let mut p = Peer::new();
    let msgs = p.connect("live");
    assert!(msgs.contains(&RtmpMessage::WindowAckSize(2_500_000)));
    assert!(msgs.contains(&RtmpMessage::SetPeerBandwidth {
        size: 2_500_000,
        limit: 2
    }));
    assert!(msgs
        .iter()
        .any(|m| matches!(m, RtmpMessage::SetChunkSize(n) if *n >= 4096)));
    let result = msgs
        .iter()
        .find_map(|m| match m {
            RtmpMessage::Command(v) if v[0] == amf0::string("_result") => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(result[1], Amf0Value::Number(1.0));
    assert!(result[2].get("fmsVer").is_some());
    assert_eq!(
        result[2].get("capabilities"),
        Some(&Amf0Value::Number(31.0))
    );
    assert_eq!(
        result[3].get("code"),
        Some(&amf0::string("NetConnection.Connect.Success"))
    );
    assert_eq!(
        result[3].get("objectEncoding"),
        Some(&Amf0Value::Number(3.0))
    );
}

#[test]
fn connect_without_an_application_is_rejected() {
    let mut p = Peer::new();
    let msgs = p.connect("");
    assert!(msgs.iter().any(|m| matches!(m, RtmpMessage::Command(v)
        if v[0] == amf0::string("_error")
        && v[3].get("code") == Some(&amf0::string("NetConnection.Connect.Rejected")))));
}

#[test]
fn acknowledgements_follow_the_peer_window() {
    let mut p = Peer::new();
    p.connect("live");
    p.send(2, 0, &RtmpMessage::WindowAckSize(1000));
    let mut acks = Vec::new();
    for _ in 0..10 {
        // 300 bytes of audio each, on an unpublished stream (ignored).
        p.send(4, 1, &RtmpMessage::Audio(vec![0xAF; 300].into()));
        acks.extend(p.received().into_iter().filter_map(|m| match m {
            RtmpMessage::Acknowledgement(n) => Some(n),
            _ => None,
        }));
    }
    // 3000+ bytes after the window was set: at least two acknowledgements,
    // each at least a window after the previous.
    assert!(acks.len() >= 2, "{acks:?}");
    for w in acks.windows(2) {
        assert!(w[1] - w[0] >= 1000);
    }
}

#[test]
fn ping_is_answered_and_peer_bandwidth_gets_a_window() {
    let mut p = Peer::new();
    p.connect("live");
    p.send(
        2,
        0,
        &RtmpMessage::UserControl(UserControl::PingRequest(1234)),
    );
    assert!(p
        .received()
        .contains(&RtmpMessage::UserControl(UserControl::PingResponse(1234))));
    p.send(
        2,
        0,
        &RtmpMessage::SetPeerBandwidth {
            size: 5_000_000,
            limit: 2,
        },
    );
    assert!(p
        .received()
        .contains(&RtmpMessage::WindowAckSize(5_000_000)));
}

#[test]
fn abort_drops_the_partial_message() {
    let mut p = Peer::new();
    p.connect("live");
    // The first chunk of a 300-byte command (chunk size 128), then Abort on
    // its chunk stream, then a complete createStream on the same stream.
    let (t, body) = RtmpMessage::Command(vec![
        amf0::string("createStream"),
        Amf0Value::Number(2.0),
        Amf0Value::Null,
        amf0::string(&"x".repeat(260)),
    ])
    .encode();
    let mut out = BytesMut::new();
    let mut enc = ChunkEncoder::new();
    enc.write(&mut out, 8, 0, 0, t, &[&body]);
    p.raw(&out[..12 + 128]);
    p.send(2, 0, &RtmpMessage::Abort(8));
    let mut out = BytesMut::new();
    let (t, body) = RtmpMessage::Command(vec![
        amf0::string("createStream"),
        Amf0Value::Number(3.0),
        Amf0Value::Null,
    ])
    .encode();
    ChunkEncoder::new().write(&mut out, 8, 0, 0, t, &[&body]);
    p.raw(&out);
    let results: Vec<f64> = p
        .received()
        .into_iter()
        .filter_map(|m| match m {
            RtmpMessage::Command(v) if v[0] == amf0::string("_result") => v[1].as_number(),
            _ => None,
        })
        .collect();
    assert_eq!(results, [3.0]);
    while let Some(e) = p.s.poll_event() {
        assert!(!matches!(e, SessionEvent::Closed(_)), "{e:?}");
    }
}

#[test]
fn idle_sessions_time_out() {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let at = s.poll_timeout().unwrap();
    assert_eq!(at, Instant::from_millis(30_000));
    s.handle_timeout(Instant::from_millis(29_999));
    assert!(s.poll_event().is_none());
    s.handle_timeout(at);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(
            arcly_core::session::SessionEnd::Timeout
        ))
    );
    assert!(s.is_closed());
}

#[test]
fn amf3_commands_are_understood() {
    // connect as a type-17 command: format byte, AMF0 name and transaction,
    // then the command object switched to AMF3.
    let mut body = vec![0u8, 0x02, 0, 7];
    body.extend_from_slice(b"connect");
    body.push(0x00);
    body.extend_from_slice(&1.0f64.to_be_bytes());
    body.extend_from_slice(&[0x11, 0x0A, 0x0B, 0x01, 0x07]);
    body.extend_from_slice(b"app");
    body.extend_from_slice(&[0x06, 0x09]);
    body.extend_from_slice(b"live");
    body.push(0x01);
    let mut p = Peer::new();
    let mut out = BytesMut::new();
    p.enc.write(&mut out, 3, 0, 0, 17, &[&body]);
    p.raw(&out);
    assert_eq!(p.s.app(), Some("live"));
    assert!(p
        .received()
        .iter()
        .any(|m| matches!(m, RtmpMessage::Command(v)
        if v[3].get("code") == Some(&amf0::string("NetConnection.Connect.Success")))));
}

#[test]
fn quiet_players_are_pinged_not_timed_out() {
    let mut p = Peer::new();
    p.connect("live");
    p.send(
        3,
        0,
        &RtmpMessage::Command(vec![
            amf0::string("createStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ]),
    );
    p.send(
        5,
        1,
        &RtmpMessage::Command(vec![
            amf0::string("play"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            amf0::string("feed"),
        ]),
    );
    let id = std::iter::from_fn(|| p.s.poll_event())
        .find_map(|e| match e {
            SessionEvent::Request(r) => Some(r.id),
            _ => None,
        })
        .unwrap();
    p.s.accept(Instant::ZERO, id);
    p.raw(&[]);
    p.received();
    let mut pings = 0;
    for minute in 1..=10u64 {
        let now = Instant::from_millis(minute * 60_000);
        assert!(p.s.poll_timeout().unwrap() <= now);
        p.s.handle_timeout(now);
        p.raw(&[]);
        pings += p
            .received()
            .iter()
            .filter(|m| matches!(m, RtmpMessage::UserControl(UserControl::PingRequest(_))))
            .count();
        assert!(p.s.poll_event().is_none(), "a quiet player is not closed");
    }
    assert_eq!(pings, 10);
}

#[test]
fn streams_can_be_created_again_after_delete() {
    let mut p = Peer::new();
    p.connect("live");
    for i in 0..50u32 {
        let txn = f64::from(2 + 2 * i);
        p.send(
            3,
            0,
            &RtmpMessage::Command(vec![
                amf0::string("createStream"),
                Amf0Value::Number(txn),
                Amf0Value::Null,
            ]),
        );
        let id = p
            .received()
            .into_iter()
            .find_map(|m| match m {
                RtmpMessage::Command(v) if v[1] == Amf0Value::Number(txn) => v[3].as_number(),
                _ => None,
            })
            .unwrap();
        p.send(
            3,
            0,
            &RtmpMessage::Command(vec![
                amf0::string("deleteStream"),
                Amf0Value::Number(txn + 1.0),
                Amf0Value::Null,
                Amf0Value::Number(id),
            ]),
        );
    }
    while let Some(e) = p.s.poll_event() {
        assert!(!matches!(e, SessionEvent::Closed(_)), "{e:?}");
    }
}

/// A peer that has connected, created stream 1 and had `play` accepted.
fn playing(reset: Option<bool>) -> (Peer, Vec<RtmpMessage>) {
    let mut p = Peer::new();
    p.connect("live");
    p.send(
        3,
        0,
        &RtmpMessage::Command(vec![
            amf0::string("createStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ]),
    );
    let mut args = vec![
        amf0::string("play"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        amf0::string("feed"),
        Amf0Value::Number(-2.0),
        Amf0Value::Number(-1.0),
    ];
    if let Some(r) = reset {
        args.push(Amf0Value::Boolean(r));
    }
    p.send(5, 1, &RtmpMessage::Command(args));
    let id = std::iter::from_fn(|| p.s.poll_event())
        .find_map(|e| match e {
            SessionEvent::Request(r) => Some(r.id),
            _ => None,
        })
        .unwrap();
    p.s.accept(Instant::ZERO, id);
    p.raw(&[]);
    let msgs = p.received();
    (p, msgs)
}

fn codes(msgs: &[RtmpMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            RtmpMessage::Command(v) if v[0] == amf0::string("onStatus") => v[3]
                .get("code")
                .and_then(Amf0Value::as_str)
                .map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[test]
fn play_reset_argument() {
    let (_, msgs) = playing(None);
    assert_eq!(
        codes(&msgs),
        ["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let (_, msgs) = playing(Some(false));
    assert_eq!(codes(&msgs), ["NetStream.Play.Start"]);
}

#[test]
fn pause_stops_media_and_resumes_at_a_key_frame() {
    use arcly_core::bus::DeliveryRef;
    use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
    use arcly_core::time::{MediaTime, Timescale};
    let (mut p, _) = playing(None);
    let mut set = TrackSet::new();
    set.upsert(TrackInfo::new(
        TrackId(0),
        CodecId::H264,
        Timescale::MILLIS,
        bytes::Bytes::from_static(b"\x01\x42\xc0\x1e"),
    ))
    .unwrap();
    let set = std::sync::Arc::new(set);
    let frame = |key: bool, ms: i64| {
        MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            key,
            MediaTime::from_millis(ms),
            bytes::Bytes::from_static(b"\x00\x00\x00\x01\x65"),
        )
    };
    let videos = |p: &mut Peer| {
        p.raw(&[]);
        p.received()
            .into_iter()
            .filter(|m| matches!(m, RtmpMessage::Video(_)))
            .count()
    };
    p.s.handle_delivery(Instant::ZERO, DeliveryRef::Tracks(&set));
    p.s.handle_delivery(Instant::ZERO, DeliveryRef::Frame(&frame(true, 0)));
    assert_eq!(videos(&mut p), 2);
    let pause = |p: &mut Peer, on: bool| {
        p.send(
            5,
            1,
            &RtmpMessage::Command(vec![
                amf0::string("pause"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::Boolean(on),
                Amf0Value::Number(40.0),
            ]),
        );
        codes(&p.received())
    };
    assert_eq!(pause(&mut p, true), ["NetStream.Pause.Notify"]);
    p.s.handle_delivery(Instant::ZERO, DeliveryRef::Frame(&frame(false, 40)));
    assert_eq!(videos(&mut p), 0);
    assert_eq!(pause(&mut p, false), ["NetStream.Unpause.Notify"]);
    p.s.handle_delivery(Instant::ZERO, DeliveryRef::Frame(&frame(false, 80)));
    assert_eq!(videos(&mut p), 0, "no delta frame before a key frame");
    p.s.handle_delivery(Instant::ZERO, DeliveryRef::Frame(&frame(true, 120)));
    p.s.handle_delivery(Instant::ZERO, DeliveryRef::Frame(&frame(false, 160)));
    assert_eq!(videos(&mut p), 2);
}
