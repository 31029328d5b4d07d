//! A toy datagram protocol for tests of hosts and endpoints: small enough
//! to read at a glance, real enough to publish and play through the engine
//! over UDP.
//!
//! Wire form: `[session id: u32][kind: u8][body]`. Id 0 is the endpoint's:
//! kind [`HELLO`] (body `publish NAME` or `play NAME`, app `live`) makes a
//! session, kind [`PING`] is answered `pong` without one. A session answers
//! its hello with kind [`WELCOME`] carrying its id; a publisher sends kind
//! [`FRAME`] with a pts in milliseconds (`i64`); a player receives kind
//! [`FRAME`] with each frame's pts. A session with id `n` sends from the
//! endpoint's socket.

use core::net::SocketAddr;
use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::bus::{CloseReason, DeliveryRef, RecvError};
use crate::endpoint::{Endpoint, Route, Unrouted};
use crate::engine::Action;
use crate::frame::{CodecId, MediaFrame, TrackId};
use crate::session::{
    Input, ProtocolError, ProtocolErrorKind, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, StreamRequest, Transmit,
};
use crate::time::{Instant, MediaTime};

/// Makes a session.
pub const HELLO: u8 = 0;
/// A frame's pts.
pub const FRAME: u8 = 1;
/// A session's answer to its hello.
pub const WELCOME: u8 = 2;
/// Answered by the endpoint alone.
pub const PING: u8 = 9;

/// One message.
pub fn msg(id: u32, kind: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u32(id);
    b.put_u8(kind);
    b.put_slice(body);
    b.freeze()
}

/// The toy's error: a datagram shorter than its 5-byte header.
#[derive(Debug, thiserror::Error)]
#[error("datagram of {0} bytes, shorter than the 5-byte header")]
pub struct Short(pub usize);

/// A toy session.
#[derive(Debug)]
pub struct Toy {
    id: u32,
    peer: Option<SocketAddr>,
    out: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    closed: bool,
}

impl Session for Toy {
    fn protocol(&self) -> &'static str {
        "toy"
    }
    fn handle_input(&mut self, _now: Instant, input: Input) {
        let Input::Datagram { from, data, .. } = input else {
            return;
        };
        self.peer = Some(from);
        if data.len() < 5 {
            let e = ProtocolError::new("toy", ProtocolErrorKind::Malformed, Short(data.len()));
            self.events.push_back(SessionEvent::Closed(e.into()));
            return;
        }
        match data[4] {
            0 => {
                let body = String::from_utf8_lossy(&data[5..]).to_string();
                let (verb, name) = body.split_once(' ').unwrap_or(("", ""));
                let action = if verb == "publish" {
                    Action::Publish
                } else {
                    Action::Play
                };
                self.events.push_back(SessionEvent::Request(StreamRequest {
                    id: RequestId(1),
                    action,
                    app: "live".into(),
                    stream: name.into(),
                    token: None,
                    user: None,
                    password: None,
                    digest: None,
                }));
            }
            1 if data.len() >= 13 => {
                let pts = i64::from_be_bytes(data[5..13].try_into().unwrap_or([0; 8]));
                self.events.push_back(SessionEvent::Frame(MediaFrame::video(
                    TrackId(0),
                    CodecId::H264,
                    true,
                    MediaTime::from_millis(pts),
                    Bytes::new(),
                )));
            }
            _ => {}
        }
    }
    fn handle_delivery(&mut self, _now: Instant, d: DeliveryRef<'_>) {
        if let (DeliveryRef::Frame(f), Some(peer)) = (d, self.peer) {
            self.out.push_back(Transmit::datagram(
                None,
                peer,
                msg(self.id, 1, &f.pts.ticks.to_be_bytes()),
            ));
        }
    }
    fn handle_stream_end(&mut self, _now: Instant, _why: RecvError) {
        self.closed = true;
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn accept(&mut self, _now: Instant, _id: RequestId) {
        if let Some(peer) = self.peer {
            self.out
                .push_back(Transmit::datagram(None, peer, msg(self.id, 2, b"")));
        }
    }
    fn reject(&mut self, _now: Instant, _id: RequestId, why: Rejection) {
        self.closed = true;
        self.events
            .push_back(SessionEvent::Closed(SessionEnd::Refused(why)));
    }
    fn close(&mut self, _now: Instant, _why: CloseReason) {
        self.closed = true;
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The toy endpoint: routes by session id, answers pings itself.
#[derive(Debug, Default)]
pub struct ToyEndpoint {
    next: u32,
    out: VecDeque<Transmit>,
}

impl Endpoint for ToyEndpoint {
    type Key = u32;
    type Session = Toy;
    fn route(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, data: &[u8]) -> Route<u32> {
        if data.len() < 5 {
            return Route::Drop;
        }
        match u32::from_be_bytes([data[0], data[1], data[2], data[3]]) {
            0 => Route::Endpoint,
            id => Route::Session(id),
        }
    }
    fn handle_unrouted(
        &mut self,
        _now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) -> Unrouted<u32, Toy> {
        match data[4] {
            0 => {
                self.next += 1;
                let session = Toy {
                    id: self.next,
                    peer: None,
                    out: VecDeque::new(),
                    events: VecDeque::new(),
                    closed: false,
                };
                Unrouted::Accept {
                    key: self.next,
                    session,
                    input: Some(data),
                }
            }
            9 => {
                self.out
                    .push_back(Transmit::datagram(Some(local), from, msg(0, 9, b"pong")));
                Unrouted::Handled
            }
            _ => Unrouted::Handled,
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
}

/// The session id a message carries, and its kind.
pub fn header(data: &[u8]) -> Option<(u32, u8)> {
    if data.len() < 5 {
        return None;
    }
    Some((
        u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
        data[4],
    ))
}

/// The pts of a [`FRAME`] message.
pub fn frame_pts(data: &[u8]) -> Option<i64> {
    data.get(5..13)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
}

/// A session that takes bytes and answers nothing, never publishing or
/// playing: what a host costs on its own (its task, timers and sockets),
/// measured without a protocol.
#[derive(Debug, Default)]
pub struct Inert;

impl Session for Inert {
    fn protocol(&self) -> &'static str {
        "inert"
    }
    fn handle_input(&mut self, _: Instant, _: Input) {}
    fn handle_delivery(&mut self, _: Instant, _: DeliveryRef<'_>) {}
    fn handle_stream_end(&mut self, _: Instant, _: RecvError) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn accept(&mut self, _: Instant, _: RequestId) {}
    fn reject(&mut self, _: Instant, _: RequestId, _: Rejection) {}
    fn close(&mut self, _: Instant, _: CloseReason) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn is_closed(&self) -> bool {
        false
    }
}
