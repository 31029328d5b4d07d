//! The server side of an RTMP connection as a [`Session`].
//!
//! Polling order, as for every session: after any `handle_*`, `accept`,
//! `reject` or `close`, drain [`poll_transmit`](Session::poll_transmit) and
//! [`poll_event`](Session::poll_event) until both return `None`.
//!
//! A `publish` or `play` raises [`SessionEvent::Request`] and the session
//! stops reading until the host answers with [`accept`](Session::accept) or
//! [`reject`](Session::reject): nothing is published or played before the
//! host says so, and bytes the client sends meanwhile wait in the input
//! buffer (bounded by [`RtmpConfig::max_backlog`]).

use crate::amf0::{self, Amf0Value};
use crate::chunk::RawMessage;
use crate::command::{self, code, Command};
use crate::config::RtmpConfig;
use crate::connection::{Connection, CSID_COMMAND, CSID_CONTROL, CSID_STREAM};
use crate::egress::Egress;
use crate::error::{Result, RtmpError};
use crate::handshake::Handshake;
use crate::ingest::Ingest;
use crate::message::{split_aggregate, RtmpMessage, UserControl};
use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::Action;
use arcly_core::session::{
    Input, Rejection, RequestId, Session, SessionEnd, SessionEvent, StreamRequest, Transmit,
};
use arcly_core::time::Instant;
use std::collections::VecDeque;

#[derive(Debug)]
enum Pending {
    Publish {
        stream_id: u32,
        name: String,
    },
    Play {
        stream_id: u32,
        name: String,
        /// `play`'s fourth argument: whether to send NetStream.Play.Reset.
        reset: bool,
    },
}

#[derive(Debug)]
struct Publishing {
    stream_id: u32,
    name: String,
    ingest: Ingest,
}

#[derive(Debug)]
struct Playing {
    stream_id: u32,
    name: String,
    egress: Egress,
    paused: bool,
}

/// One RTMP connection, server side.
#[derive(Debug)]
pub struct ServerSession {
    conn: Connection,
    events: VecDeque<SessionEvent>,
    app: Option<String>,
    /// Credentials on `connect`'s application or `tcUrl` (a publish or
    /// play's own come first).
    /// (Boxed, and only when there are any, like the other rarely used
    /// fields below: a player's session should stay small.)
    app_query: Option<Box<command::NameQuery>>,
    next_stream_id: u32,
    open_streams: u32,
    next_request: u32,
    pending: Option<(RequestId, Pending)>,
    // Boxed: a connection only ever does one of the two, and a player's
    // session should stay small (thousands of them per process).
    publishing: Option<Box<Publishing>>,
    playing: Option<Box<Playing>>,
    metadata: Option<Box<Amf0Value>>,
    last_input: Instant,
    last_ping: Option<Instant>,
    closed: bool,
    error: Option<Box<RtmpError>>,
}

impl ServerSession {
    /// A session for a connection accepted at `now`.
    pub fn new(cfg: RtmpConfig, now: Instant) -> Self {
        let hs = Handshake::server(cfg.seed);
        ServerSession {
            conn: Connection::new(cfg, hs),
            events: VecDeque::new(),
            app: None,
            app_query: None,
            next_stream_id: 1,
            open_streams: 0,
            next_request: 1,
            pending: None,
            publishing: None,
            playing: None,
            metadata: None,
            last_input: now,
            last_ping: None,
            closed: false,
            error: None,
        }
    }

    /// The application named by `connect`, without its query string.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// The publisher's last `onMetaData`, kept for players and stats.
    pub fn metadata(&self) -> Option<&Amf0Value> {
        self.metadata.as_deref()
    }

    /// The error that ended the session, if one did.
    pub fn error(&self) -> Option<&RtmpError> {
        self.error.as_deref()
    }

    /// Which handshake the client used.
    pub fn handshake_kind(&self) -> Option<crate::handshake::HandshakeKind> {
        self.conn.handshake().kind()
    }

    /// Frames dropped because their track had no configuration yet.
    pub fn dropped_frames(&self) -> u64 {
        self.publishing.as_ref().map_or(0, |p| p.ingest.dropped)
    }

    /// When a quiet player is pinged next: half the idle timeout after the
    /// later of its last input and the last ping.
    fn next_ping(&self) -> Instant {
        let since = self
            .last_ping
            .map_or(self.last_input, |p| p.max(self.last_input));
        since + self.conn.cfg.idle_timeout / 2
    }

    fn fail(&mut self, e: RtmpError) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Where it happened, to find the spot in a capture of the
        // connection: the parser had consumed this many bytes.
        let end = e.clone().into_end(self.conn.consumed());
        self.conn.discard_input();
        self.events.push_back(SessionEvent::Closed(end));
        self.error = Some(Box::new(e));
    }

    fn end(&mut self, why: SessionEnd) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.conn.discard_input();
        self.events.push_back(SessionEvent::Closed(why));
    }

    /// Parses what is buffered, until a request waits for the host.
    fn process(&mut self) {
        while !self.closed && self.pending.is_none() {
            match self.conn.next_message() {
                Ok(Some(m)) => {
                    if let Err(e) = self.on_message(m) {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(e),
            }
        }
        if !self.closed {
            if let Err(e) = self.conn.check_backlog() {
                self.fail(e);
            }
        }
    }

    fn on_message(&mut self, raw: RawMessage) -> Result<()> {
        let msg = RtmpMessage::decode(&raw, self.conn.cfg.max_amf_depth)?;
        if self.conn.control(&msg)? {
            return Ok(());
        }
        let h = raw.header;
        match msg {
            RtmpMessage::Video(body) => {
                if let Some(p) = self
                    .publishing
                    .as_mut()
                    .filter(|p| p.stream_id == h.stream_id)
                {
                    p.ingest.video(h.timestamp, &body, &mut self.events)?;
                }
            }
            RtmpMessage::Audio(body) => {
                if let Some(p) = self
                    .publishing
                    .as_mut()
                    .filter(|p| p.stream_id == h.stream_id)
                {
                    p.ingest.audio(h.timestamp, &body, &mut self.events)?;
                }
            }
            RtmpMessage::Aggregate(body) => {
                if let Some(p) = self
                    .publishing
                    .as_mut()
                    .filter(|p| p.stream_id == h.stream_id)
                {
                    let parts = split_aggregate(&body);
                    let first = parts.first().map_or(0, |p| p.timestamp);
                    for part in parts {
                        let ts = h.timestamp.wrapping_add(part.timestamp.wrapping_sub(first));
                        match part.tag_type {
                            8 => p.ingest.audio(ts, &part.body, &mut self.events)?,
                            9 => p.ingest.video(ts, &part.body, &mut self.events)?,
                            _ => {}
                        }
                    }
                }
            }
            RtmpMessage::Data(values) => self.on_data(h.stream_id, values),
            RtmpMessage::Command(values) => {
                if let Some(c) = Command::from_values(values) {
                    self.on_command(h.stream_id, c)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_data(&mut self, stream_id: u32, values: Vec<Amf0Value>) {
        let Some(p) = self
            .publishing
            .as_mut()
            .filter(|p| p.stream_id == stream_id)
        else {
            return;
        };
        let mut it = values.into_iter().peekable();
        if it.peek().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
            it.next();
        }
        if it.next().as_ref().and_then(Amf0Value::as_str) != Some("onMetaData") {
            return;
        }
        if let Some(meta) = it.next() {
            let pairs = p.ingest.metadata(&meta);
            self.metadata = Some(Box::new(meta));
            self.events.push_back(SessionEvent::Metadata(pairs));
        }
    }

    fn on_command(&mut self, stream_id: u32, c: Command) -> Result<()> {
        let txn = c.transaction;
        match c.name.as_str() {
            "connect" => self.on_connect(&c),
            "createStream" => {
                if self.open_streams >= self.conn.cfg.max_streams {
                    return Err(RtmpError::TooManyStreams(
                        self.conn.cfg.max_streams as usize,
                    ));
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                self.open_streams += 1;
                self.conn.send_command(
                    CSID_COMMAND,
                    0,
                    command::result(txn, Amf0Value::Number(f64::from(id))),
                );
            }
            "releaseStream" | "getStreamLength" => {
                let v = if c.name == "getStreamLength" {
                    Amf0Value::Number(0.0)
                } else {
                    Amf0Value::Undefined
                };
                if txn != 0.0 {
                    self.conn
                        .send_command(CSID_COMMAND, 0, command::result(txn, v));
                }
            }
            "FCPublish" | "FCUnpublish" => {
                let name = c.arg_str(0).unwrap_or_default().to_owned();
                let (reply, code) = if c.name == "FCPublish" {
                    ("onFCPublish", code::PUBLISH_START)
                } else {
                    ("onFCUnpublish", code::UNPUBLISH_SUCCESS)
                };
                self.conn.send_command(
                    CSID_COMMAND,
                    0,
                    command::status(reply, "status", code, &name),
                );
            }
            "publish" => self.on_publish(stream_id, &c)?,
            "play" => self.on_play(stream_id, &c)?,
            "deleteStream" => {
                let sid = c.arg_num(0).map_or(stream_id, |n| n as u32);
                self.stop_stream(sid);
                self.open_streams = self.open_streams.saturating_sub(1);
            }
            "closeStream" => self.stop_stream(stream_id),
            "pause" => self.on_pause(stream_id, &c),
            // receiveAudio, receiveVideo, _checkbw, _result, onStatus, ...
            _ => {}
        }
        Ok(())
    }

    fn on_connect(&mut self, c: &Command) {
        let app = c
            .object
            .get("app")
            .and_then(Amf0Value::as_str)
            .unwrap_or("");
        let q = command::split_query(app);
        if q.name.trim_matches('/').is_empty() {
            // Nothing can be published or played without an application.
            let mut v = command::status(
                "_error",
                "error",
                code::CONNECT_REJECTED,
                "connect names no application",
            );
            v[1] = Amf0Value::Number(c.transaction);
            self.conn.send_command(CSID_COMMAND, 0, v);
            return;
        }
        let tc = c
            .object
            .get("tcUrl")
            .and_then(Amf0Value::as_str)
            .map(command::split_query)
            .unwrap_or_default();
        // The application name is URI text too; with a bad escape there is
        // none, and a publish or play is refused as a bad name.
        self.app = arcly_core::engine::percent_decode(q.name.trim_matches('/'));
        let creds = command::NameQuery {
            name: String::new(),
            token: q.token.or(tc.token),
            user: q.user.or(tc.user),
            pass: q.pass.or(tc.pass),
        };
        self.app_query = (creds.token.is_some() || creds.user.is_some() || creds.pass.is_some())
            .then(|| Box::new(creds));
        let encoding = c
            .object
            .get("objectEncoding")
            .and_then(Amf0Value::as_number)
            .unwrap_or(0.0);
        let cfg = &self.conn.cfg;
        let (window, bw) = (cfg.window_ack_size, cfg.peer_bandwidth);
        self.conn.announce_window(window);
        self.conn.send(
            CSID_CONTROL,
            0,
            0,
            &RtmpMessage::SetPeerBandwidth { size: bw, limit: 2 },
        );
        self.conn.announce_chunk_size();
        self.conn.send_command(
            CSID_COMMAND,
            0,
            command::connect_result(c.transaction, encoding),
        );
    }

    fn request(&mut self, action: Action, q: &command::NameQuery) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request = self.next_request.wrapping_add(1);
        // A user and password come as a pair, from one place.
        let app_query = self.app_query.as_deref();
        let (user, password) = match (&q.user, app_query.and_then(|a| a.user.as_ref())) {
            (Some(_), _) => (q.user.clone(), q.pass.clone()),
            (None, Some(u)) => (Some(u.clone()), app_query.and_then(|a| a.pass.clone())),
            (None, None) => (None, None),
        };
        self.events.push_back(SessionEvent::Request(StreamRequest {
            id,
            action,
            app: self.app.clone().unwrap_or_default(),
            stream: q.name.clone(),
            token: q
                .token
                .clone()
                .or_else(|| app_query.and_then(|a| a.token.clone())),
            user,
            password,
            digest: None,
        }));
        id
    }

    fn on_publish(&mut self, stream_id: u32, c: &Command) -> Result<()> {
        let Some(q) = self.asked_name(true, stream_id, c) else {
            return Ok(());
        };
        // An empty name goes to the host like any other, which refuses it
        // and says so in its log.
        if self.publishing.is_some() || self.app.is_none() {
            let why = if self.publishing.is_some() {
                Rejection::AlreadyPublishing
            } else {
                Rejection::BadName
            };
            self.refuse(true, stream_id, &q.name, &why);
            return Ok(());
        }
        let id = self.request(Action::Publish, &q);
        self.pending = Some((
            id,
            Pending::Publish {
                stream_id,
                name: q.name,
            },
        ));
        Ok(())
    }

    fn on_play(&mut self, stream_id: u32, c: &Command) -> Result<()> {
        let Some(q) = self.asked_name(false, stream_id, c) else {
            return Ok(());
        };
        if self.playing.is_some() || self.app.is_none() {
            self.refuse(false, stream_id, &q.name, &Rejection::BadName);
            return Ok(());
        }
        // play(name, start, duration, reset): start -2/-1 mean live (the
        // only kind here) and duration -1 to the end, so only reset changes
        // what is sent.
        let reset = !matches!(c.args.get(3), Some(Amf0Value::Boolean(false)));
        let id = self.request(Action::Play, &q);
        self.pending = Some((
            id,
            Pending::Play {
                stream_id,
                name: q.name,
                reset,
            },
        ));
        Ok(())
    }

    /// The stream name a publish or play asks for, percent-decoded as URI
    /// text (the one rule of `arcly_core::engine::percent_decode`); with a
    /// bad escape the request is refused and `None` returned.
    fn asked_name(
        &mut self,
        publish: bool,
        stream_id: u32,
        c: &Command,
    ) -> Option<command::NameQuery> {
        let raw = c.arg_str(0).unwrap_or_default();
        let mut q = command::split_query(raw);
        match arcly_core::engine::percent_decode(&q.name) {
            Some(name) => {
                q.name = name;
                Some(q)
            }
            None => {
                self.refuse(publish, stream_id, raw, &Rejection::BadName);
                None
            }
        }
    }

    fn refuse(&mut self, publish: bool, stream_id: u32, name: &str, why: &Rejection) {
        let code = command::rejection_code(publish, why);
        let desc = match why {
            Rejection::BadName => format!(
                "stream name {name:?} missing or not valid: publish to or play rtmp://HOST/APP/STREAM"
            ),
            why => format!("{name}: {why}"),
        };
        self.conn.send_command(
            CSID_STREAM,
            stream_id,
            command::status("onStatus", "error", code, &desc),
        );
    }

    fn on_pause(&mut self, stream_id: u32, c: &Command) {
        let Some(p) = self.playing.as_mut().filter(|p| p.stream_id == stream_id) else {
            return;
        };
        let pause = matches!(c.args.first(), Some(Amf0Value::Boolean(true)));
        p.paused = pause;
        let code = if pause {
            code::PAUSE_NOTIFY
        } else {
            p.egress.wait_for_key_frame();
            code::UNPAUSE_NOTIFY
        };
        let name = p.name.clone();
        self.conn.send_command(
            CSID_STREAM,
            stream_id,
            command::status("onStatus", "status", code, &name),
        );
    }

    fn stop_stream(&mut self, stream_id: u32) {
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.stream_id == stream_id)
        {
            if let Some(p) = self.publishing.take() {
                self.conn.send_command(
                    CSID_STREAM,
                    stream_id,
                    command::status("onStatus", "status", code::UNPUBLISH_SUCCESS, &p.name),
                );
            }
            self.events.push_back(SessionEvent::PublishStopped);
        }
        if self
            .playing
            .as_ref()
            .is_some_and(|p| p.stream_id == stream_id)
        {
            self.playing = None;
            self.events.push_back(SessionEvent::PlayStopped);
        }
    }

    fn start_play(&mut self, stream_id: u32, name: String, reset: bool) {
        let c = &mut self.conn;
        c.send(
            CSID_CONTROL,
            0,
            0,
            &RtmpMessage::UserControl(UserControl::StreamBegin(stream_id)),
        );
        let codes: &[&str] = if reset {
            &[code::PLAY_RESET, code::PLAY_START]
        } else {
            &[code::PLAY_START]
        };
        for &code in codes {
            c.send_command(
                CSID_STREAM,
                stream_id,
                command::status("onStatus", "status", code, &name),
            );
        }
        c.send_data(
            stream_id,
            0,
            vec![
                amf0::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
        );
        self.playing = Some(Box::new(Playing {
            stream_id,
            name,
            egress: Egress::default(),
            paused: false,
        }));
    }
}

impl Session for ServerSession {
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
                if self.publishing.take().is_some() {
                    self.events.push_back(SessionEvent::PublishStopped);
                }
                self.end(SessionEnd::Normal);
            }
        }
    }

    fn handle_delivery(&mut self, _now: Instant, delivery: DeliveryRef<'_>) {
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        if p.paused || self.closed {
            return;
        }
        match delivery {
            DeliveryRef::Tracks(t) => p.egress.tracks(t, &mut self.conn, p.stream_id, false),
            DeliveryRef::Frame(f) => p.egress.frame(f, &mut self.conn, p.stream_id),
            // The bus re-sends the tracks and resumes at a key frame.
            DeliveryRef::Lagged { .. } => {}
        }
    }

    fn handle_stream_end(&mut self, _now: Instant, _why: RecvError) {
        if let Some(p) = self.playing.take() {
            self.conn.send_command(
                CSID_STREAM,
                p.stream_id,
                command::status("onStatus", "status", code::PLAY_UNPUBLISH_NOTIFY, &p.name),
            );
            self.conn.send(
                CSID_CONTROL,
                0,
                0,
                &RtmpMessage::UserControl(UserControl::StreamEof(p.stream_id)),
            );
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.playing.is_some() {
            // A player may legitimately send nothing for minutes (its
            // acknowledgement window is 2.5 MB): ping it instead, which
            // keeps the path warm and draws an answer from live clients.
            if now >= self.next_ping() {
                let stamp = (now.as_micros() / 1000) as u32;
                self.conn.send(
                    CSID_CONTROL,
                    0,
                    0,
                    &RtmpMessage::UserControl(UserControl::PingRequest(stamp)),
                );
                self.last_ping = Some(now);
            }
            return;
        }
        if now.saturating_duration_since(self.last_input) >= self.conn.cfg.idle_timeout {
            self.end(SessionEnd::Timeout);
        }
    }

    fn accept(&mut self, _now: Instant, id: RequestId) {
        match self.pending.take() {
            Some((pid, Pending::Publish { stream_id, name })) if pid == id => {
                self.conn.send_command(
                    CSID_STREAM,
                    stream_id,
                    command::status("onStatus", "status", code::PUBLISH_START, &name),
                );
                self.publishing = Some(Box::new(Publishing {
                    stream_id,
                    name,
                    ingest: Ingest::new(self.conn.cfg.max_timestamp_jump_ms),
                }));
            }
            Some((
                pid,
                Pending::Play {
                    stream_id,
                    name,
                    reset,
                },
            )) if pid == id => {
                self.start_play(stream_id, name, reset);
            }
            other => self.pending = other,
        }
        self.process();
    }

    fn reject(&mut self, _now: Instant, id: RequestId, why: Rejection) {
        match self.pending.take() {
            Some((pid, Pending::Publish { stream_id, name })) if pid == id => {
                self.refuse(true, stream_id, &name, &why);
            }
            Some((
                pid,
                Pending::Play {
                    stream_id, name, ..
                },
            )) if pid == id => {
                self.refuse(false, stream_id, &name, &why);
            }
            other => self.pending = other,
        }
        self.process();
    }

    fn close(&mut self, _now: Instant, why: CloseReason) {
        if let Some(p) = self.publishing.take() {
            self.conn.send_command(
                CSID_STREAM,
                p.stream_id,
                command::status("onStatus", "status", code::UNPUBLISH_SUCCESS, &p.name),
            );
        }
        if let Some(p) = self.playing.take() {
            let code = if why == CloseReason::PublisherEnded {
                code::PLAY_UNPUBLISH_NOTIFY
            } else {
                code::PLAY_STOP
            };
            self.conn.send_command(
                CSID_STREAM,
                p.stream_id,
                command::status("onStatus", "status", code, &p.name),
            );
        }
        self.end(SessionEnd::Host);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.conn.take_output().map(Transmit::stream)
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        let e = self.events.pop_front();
        if e.is_none() && self.playing.is_some() && self.events.capacity() > 0 {
            // A player has events only at its start: free the queue.
            self.events = VecDeque::new();
        }
        e
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            None
        } else if self.playing.is_some() {
            Some(self.next_ping())
        } else {
            Some(self.last_input + self.conn.cfg.idle_timeout)
        }
    }

    fn is_closed(&self) -> bool {
        self.closed && !self.conn.has_output()
    }
}
