//! The client side of an RTMP connection, publishing (push to another
//! server) or playing (pull from one), with the same contract as the server
//! session so a host drives both alike.
//!
//! * A publishing client takes the stream to send through
//!   [`handle_delivery`](Session::handle_delivery), exactly as a playing
//!   server session does; deliveries that arrive before the server has
//!   answered `publish` are queued (bounded by
//!   [`RtmpConfig::max_queued_frames`]) and sent once it has.
//! * A playing client reports what it receives as
//!   [`SessionEvent::Tracks`] / [`SessionEvent::Frame`] /
//!   [`SessionEvent::Metadata`], as a publishing server session does.
//!
//! A refusal by the server ends the session with `SessionEnd::Protocol`
//! whose source is [`RtmpError::Refused`] with the server's [`StatusCode`],
//! and whose kind is `ProtocolErrorKind::PeerRefused` with the code in the
//! engine's terms:
//!
//! ```
//! use arcly_core::session::SessionEnd;
//! use arcly_rtmp::command::StatusCode;
//! use arcly_rtmp::RtmpError;
//!
//! /// Whether a player should try again later: the stream is not there yet.
//! fn not_published_yet(end: &SessionEnd) -> bool {
//!     matches!(
//!         end.protocol_error().and_then(|e| e.downcast_ref::<RtmpError>()),
//!         Some(RtmpError::Refused { status: StatusCode::PlayStreamNotFound, .. })
//!     )
//! }
//! # assert!(!not_published_yet(&SessionEnd::Normal));
//! ```

use crate::amf0::{self, Amf0Value};
use crate::command::{self, Command, StatusCode};
use crate::config::RtmpConfig;
use crate::connection::{Connection, CSID_COMMAND, CSID_CONTROL, CSID_STREAM};
use crate::egress::Egress;
use crate::error::{Result, RtmpError};
use crate::handshake::Handshake;
use crate::ingest::Ingest;
use crate::message::{RtmpMessage, UserControl};
use arcly_core::bus::{CloseReason, Delivery, DeliveryRef, RecvError};
use arcly_core::session::{
    Input, Rejection, RequestId, Session, SessionEnd, SessionEvent, Transmit,
};
use arcly_core::time::Instant;
use std::collections::VecDeque;

/// What the client does once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// Send a stream.
    Publish,
    /// Receive a stream.
    Play,
}

/// Where the client connects: `rtmp://host/APP/STREAM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTarget {
    /// The application (may carry `?token=`).
    pub app: String,
    /// The stream name (may carry `?token=`).
    pub stream: String,
    /// The `tcUrl` of `connect`.
    pub tc_url: String,
}

/// A parsed `rtmp://` URL: where to connect and what to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (1935 when the URL names none).
    pub port: u16,
    /// The application, stream and tcUrl.
    pub target: ClientTarget,
}

impl ClientTarget {
    /// Parses `rtmp://host[:port]/app[/more]/stream[?query]`: the last path
    /// segment is the stream (with its query), the rest is the application,
    /// as ffmpeg splits it. `None` for other schemes or a missing stream.
    pub fn parse(url: &str) -> Option<ClientUrl> {
        let rest = url.strip_prefix("rtmp://")?;
        let (authority, path) = rest.split_once('/')?;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().ok()?),
                None if after.is_empty() => (h, 1935),
                None => return None,
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (authority, 1935),
            }
        };
        // The query belongs to the stream name even when it sits on the
        // last segment only.
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let (app, stream) = path_only.rsplit_once('/')?;
        if host.is_empty() || app.is_empty() || stream.is_empty() {
            return None;
        }
        let stream = match query {
            Some(q) => format!("{stream}?{q}"),
            None => stream.to_owned(),
        };
        Some(ClientUrl {
            host: host.to_owned(),
            port,
            target: ClientTarget {
                app: app.to_owned(),
                stream,
                tc_url: format!("rtmp://{authority}/{app}"),
            },
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshaking,
    Connecting,
    CreatingStream,
    Starting,
    Streaming,
    Done,
}

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE: f64 = 4.0;

/// One RTMP connection, client side.
#[derive(Debug)]
pub struct ClientSession {
    conn: Connection,
    mode: ClientMode,
    target: ClientTarget,
    state: State,
    stream_id: u32,
    events: VecDeque<SessionEvent>,
    ingest: Ingest,
    egress: Egress,
    queued: VecDeque<Delivery>,
    /// The published stream ended before the server took the publish: the
    /// queue goes out, then the client ends.
    ended: bool,
    last_input: Instant,
    closed: bool,
}

impl ClientSession {
    /// A client that will `mode` the stream at `target`; C0+C1 are ready to
    /// send at once.
    pub fn new(cfg: RtmpConfig, mode: ClientMode, target: ClientTarget, now: Instant) -> Self {
        let hs = Handshake::client(cfg.seed, cfg.digest_handshake);
        let max_jump = cfg.max_timestamp_jump_ms;
        let mut conn = Connection::new(cfg, hs);
        conn.start_handshake();
        ClientSession {
            conn,
            mode,
            target,
            state: State::Handshaking,
            stream_id: 0,
            events: VecDeque::new(),
            ingest: Ingest::new(max_jump),
            egress: Egress::default(),
            queued: VecDeque::new(),
            ended: false,
            last_input: now,
            closed: false,
        }
    }

    /// Whether the server has started the stream (publishing or playing).
    pub fn is_streaming(&self) -> bool {
        self.state == State::Streaming
    }

    /// Frames sent (publishing client).
    pub fn frames_sent(&self) -> u64 {
        self.egress.frames()
    }

    fn fail(&mut self, e: RtmpError) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.state = State::Done;
        let end = e.into_end(self.conn.consumed());
        self.conn.discard_input();
        self.events.push_back(SessionEvent::Closed(end));
    }

    /// The server said no to what the current state asked.
    fn refused(&mut self, status: StatusCode) {
        let stage = match (self.state, self.mode) {
            (State::Handshaking | State::Connecting, _) => "connect",
            (State::CreatingStream, _) => "createStream",
            (_, ClientMode::Publish) => "publish",
            (_, ClientMode::Play) => "play",
        };
        self.fail(RtmpError::Refused { stage, status });
    }

    fn process(&mut self) {
        while !self.closed {
            let was_handshaking = !self.conn.handshake_done();
            let r = self.conn.next_message();
            if was_handshaking && self.conn.handshake_done() && self.state == State::Handshaking {
                self.send_connect();
            }
            match r {
                Ok(Some(m)) => {
                    if let Err(e) = self.on_message(m) {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(e),
            }
        }
    }

    fn send_connect(&mut self) {
        self.state = State::Connecting;
        self.conn.announce_chunk_size();
        let obj = amf0::object([
            ("app", amf0::string(&self.target.app)),
            ("type", amf0::string("nonprivate")),
            ("flashVer", amf0::string("FMLE/3.0 (compatible; arcly)")),
            ("tcUrl", amf0::string(&self.target.tc_url)),
            // Enhanced RTMP: the codecs this side takes in enhanced tags.
            (
                "fourCcList",
                Amf0Value::StrictArray(
                    ["av01", "vp09", "hvc1", "avc1", "Opus", "mp4a", ".mp3"]
                        .into_iter()
                        .map(amf0::string)
                        .collect(),
                ),
            ),
        ]);
        self.conn.send_command(
            CSID_COMMAND,
            0,
            command::call("connect", TXN_CONNECT, obj, vec![]),
        );
    }

    fn on_message(&mut self, raw: crate::chunk::RawMessage) -> Result<()> {
        let msg = RtmpMessage::decode(&raw, self.conn.cfg.max_amf_depth)?;
        if self.conn.control(&msg)? {
            return Ok(());
        }
        let h = raw.header;
        let playing = self.mode == ClientMode::Play && self.state == State::Streaming;
        match msg {
            RtmpMessage::Video(b) if playing => {
                self.ingest.video(h.timestamp, &b, &mut self.events)?
            }
            RtmpMessage::Audio(b) if playing => {
                self.ingest.audio(h.timestamp, &b, &mut self.events)?
            }
            RtmpMessage::Data(values) if playing => {
                let mut it = values.into_iter();
                if it.next().as_ref().and_then(Amf0Value::as_str) == Some("onMetaData") {
                    if let Some(meta) = it.next() {
                        let pairs = self.ingest.metadata(&meta);
                        self.events.push_back(SessionEvent::Metadata(pairs));
                    }
                }
            }
            RtmpMessage::Command(values) => {
                if let Some(c) = Command::from_values(values) {
                    self.on_command(c);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, c: Command) {
        match (c.name.as_str(), self.state) {
            ("_result", State::Connecting) if c.transaction == TXN_CONNECT => {
                let name = self.target.stream.clone();
                if self.mode == ClientMode::Publish {
                    self.conn.send_command(
                        CSID_COMMAND,
                        0,
                        command::call(
                            "releaseStream",
                            2.0,
                            Amf0Value::Null,
                            vec![amf0::string(&name)],
                        ),
                    );
                    self.conn.send_command(
                        CSID_COMMAND,
                        0,
                        command::call("FCPublish", 3.0, Amf0Value::Null, vec![amf0::string(&name)]),
                    );
                }
                self.conn.send_command(
                    CSID_COMMAND,
                    0,
                    command::call("createStream", TXN_CREATE, Amf0Value::Null, vec![]),
                );
                self.state = State::CreatingStream;
            }
            ("_result", State::CreatingStream) if c.transaction == TXN_CREATE => {
                self.stream_id = c.arg_num(0).map_or(1, |n| n as u32);
                let name = amf0::string(&self.target.stream);
                let call = match self.mode {
                    ClientMode::Publish => command::call(
                        "publish",
                        5.0,
                        Amf0Value::Null,
                        vec![name, amf0::string("live")],
                    ),
                    ClientMode::Play => {
                        self.conn.send(
                            CSID_CONTROL,
                            0,
                            0,
                            &RtmpMessage::UserControl(UserControl::SetBufferLength {
                                stream_id: self.stream_id,
                                millis: 3000,
                            }),
                        );
                        command::call(
                            "play",
                            5.0,
                            Amf0Value::Null,
                            vec![name, Amf0Value::Number(-2.0)],
                        )
                    }
                };
                self.conn.send_command(CSID_STREAM, self.stream_id, call);
                self.state = State::Starting;
            }
            // releaseStream and FCPublish are optional: some servers refuse
            // them and take the publish anyway.
            ("_error", _) if c.transaction == 2.0 || c.transaction == 3.0 => {}
            ("_error", _) => self.refused(status_code(&c)),
            ("onStatus", _) => {
                let status = status_code(&c);
                let level = c
                    .args
                    .first()
                    .and_then(|o| o.get("level"))
                    .and_then(Amf0Value::as_str);
                if level == Some("error") || status == StatusCode::ConnectRejected {
                    self.refused(status);
                    return;
                }
                match status {
                    StatusCode::PublishStart | StatusCode::PlayStart
                        if self.state == State::Starting =>
                    {
                        self.state = State::Streaming;
                        self.flush_queue();
                        if self.ended {
                            self.unpublish(SessionEnd::Normal);
                        }
                    }
                    StatusCode::PlayUnpublishNotify | StatusCode::PlayStop => {
                        self.events.push_back(SessionEvent::PublishStopped);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The published stream ended: says so to the server, and ends once
    /// that is sent.
    fn unpublish(&mut self, end: SessionEnd) {
        let name = amf0::string(&self.target.stream);
        self.conn.send_command(
            CSID_COMMAND,
            0,
            command::call("FCUnpublish", 6.0, Amf0Value::Null, vec![name]),
        );
        self.conn.send_command(
            CSID_COMMAND,
            0,
            command::call(
                "deleteStream",
                7.0,
                Amf0Value::Null,
                vec![Amf0Value::Number(f64::from(self.stream_id))],
            ),
        );
        self.state = State::Done;
        if !self.closed {
            self.closed = true;
            self.events.push_back(SessionEvent::Closed(end));
        }
    }

    fn flush_queue(&mut self) {
        while let Some(d) = self.queued.pop_front() {
            match &d {
                Delivery::Tracks(t) => self.egress.tracks(t, &mut self.conn, self.stream_id, true),
                Delivery::Frame(f) => self.egress.frame(f, &mut self.conn, self.stream_id),
                Delivery::Lagged { .. } => {}
            }
        }
    }
}

fn status_code(c: &Command) -> StatusCode {
    let code = c
        .args
        .first()
        .and_then(|o| o.get("code"))
        .and_then(Amf0Value::as_str)
        .unwrap_or("");
    StatusCode::parse(code)
}

impl Session for ClientSession {
    fn protocol(&self) -> &'static str {
        "rtmp"
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        if self.closed {
            return;
        }
        self.last_input = now;
        match input {
            Input::Stream(data) | Input::Datagram { data, .. } => {
                self.conn.feed(data);
                self.process();
            }
            Input::Eof => {
                self.closed = true;
                self.state = State::Done;
                self.events
                    .push_back(SessionEvent::Closed(SessionEnd::Normal));
            }
        }
    }

    fn handle_delivery(&mut self, _now: Instant, delivery: DeliveryRef<'_>) {
        if self.mode != ClientMode::Publish || self.closed {
            return;
        }
        if self.state != State::Streaming {
            if self.queued.len() < self.conn.cfg.max_queued_frames {
                self.queued.push_back(delivery.to_owned());
            } else if let DeliveryRef::Tracks(_) = delivery {
                self.queued.clear();
                self.queued.push_back(delivery.to_owned());
            }
            return;
        }
        match delivery {
            DeliveryRef::Tracks(t) => self.egress.tracks(t, &mut self.conn, self.stream_id, true),
            DeliveryRef::Frame(f) => self.egress.frame(f, &mut self.conn, self.stream_id),
            DeliveryRef::Lagged { .. } => {}
        }
    }

    fn handle_stream_end(&mut self, _now: Instant, _why: RecvError) {
        if self.mode != ClientMode::Publish {
            return;
        }
        if self.state == State::Streaming {
            self.unpublish(SessionEnd::Normal);
        } else {
            // Sent, and the client ended, once the server takes the publish.
            self.ended = true;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.closed
            && now.saturating_duration_since(self.last_input) >= self.conn.cfg.idle_timeout
        {
            self.closed = true;
            self.events
                .push_back(SessionEvent::Closed(SessionEnd::Timeout));
        }
    }

    fn accept(&mut self, _now: Instant, _id: RequestId) {}

    fn reject(&mut self, _now: Instant, _id: RequestId, _why: Rejection) {}

    fn close(&mut self, _now: Instant, _why: CloseReason) {
        if self.mode == ClientMode::Publish && self.state == State::Streaming {
            self.unpublish(SessionEnd::Host);
        }
        if !self.closed {
            self.closed = true;
            self.events
                .push_back(SessionEvent::Closed(SessionEnd::Host));
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.conn.take_output().map(Transmit::stream)
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            None
        } else {
            Some(self.last_input + self.conn.cfg.idle_timeout)
        }
    }

    fn is_closed(&self) -> bool {
        self.closed && !self.conn.has_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ClientTarget::parse("rtmp://127.0.0.1:1936/live/cam1?token=abc").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1936));
        assert_eq!(u.target.app, "live");
        assert_eq!(u.target.stream, "cam1?token=abc");
        assert_eq!(u.target.tc_url, "rtmp://127.0.0.1:1936/live");
        let u = ClientTarget::parse("rtmp://example.org/app/inst/name").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("example.org", 1935));
        assert_eq!(
            (u.target.app.as_str(), u.target.stream.as_str()),
            ("app/inst", "name")
        );
        let u = ClientTarget::parse("rtmp://[::1]:1940/live/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1940));
        assert_eq!(
            ClientTarget::parse("rtmp://[::1]/live/x").unwrap().port,
            1935
        );
        assert!(ClientTarget::parse("http://h/live/x").is_none());
        assert!(ClientTarget::parse("rtmp://h/live").is_none());
        assert!(ClientTarget::parse("rtmp://h:notaport/live/x").is_none());
    }
}
