//! One call of our RTMP client to another server, as a session of the
//! local engine: a push plays the local key and publishes it there
//! ([`crate::push`]); an edge plays the key there and publishes it here
//! ([`crate::demand`]). The client asks the engine for the local side at
//! once, under a protocol name of its own (which the gateway's
//! authenticator lets through: the operator configured the relay).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::{Action, Engine, StreamKey};
use arcly_core::session::{
    BindError, Conductor, ConnContext, Input, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, StreamRequest, Transmit,
};
use arcly_core::time::Instant;
use arcly_rtmp::command::StatusCode;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig, RtmpError};
use arcly_tokio::{drive_stream, Clock, ListenerConfig, Log, ShutdownSignal};

/// Our RTMP client as a session that asks for the local side of its key.
struct Relay {
    inner: ClientSession,
    protocol: &'static str,
    ask: Option<StreamRequest>,
    /// Ask only once the remote server plays the stream (an edge: nothing
    /// is published here for a key the origin does not have).
    ask_when_streaming: bool,
    end: Arc<Mutex<Option<SessionEnd>>>,
    streamed: Arc<AtomicBool>,
}

impl Session for Relay {
    fn protocol(&self) -> &'static str {
        self.protocol
    }
    fn handle_input(&mut self, now: Instant, input: Input) {
        self.inner.handle_input(now, input);
        if self.inner.is_streaming() {
            self.streamed.store(true, Ordering::Relaxed);
        }
    }
    fn handle_delivery(&mut self, now: Instant, d: DeliveryRef<'_>) {
        self.inner.handle_delivery(now, d);
    }
    fn handle_stream_end(&mut self, now: Instant, why: RecvError) {
        self.inner.handle_stream_end(now, why);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }
    fn accept(&mut self, _now: Instant, _id: RequestId) {}
    fn reject(&mut self, now: Instant, _id: RequestId, why: Rejection) {
        if let Ok(mut e) = self.end.lock() {
            *e = Some(SessionEnd::Refused(why));
        }
        self.inner.close(now, CloseReason::Shutdown);
    }
    fn close(&mut self, now: Instant, why: CloseReason) {
        self.inner.close(now, why);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.inner.poll_transmit()
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        if !self.ask_when_streaming || self.inner.is_streaming() {
            if let Some(r) = self.ask.take() {
                return Some(SessionEvent::Request(r));
            }
        }
        let ev = self.inner.poll_event();
        if let Some(SessionEvent::Closed(end)) = &ev {
            if let Ok(mut e) = self.end.lock() {
                e.get_or_insert_with(|| end.clone());
            }
        }
        ev
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    fn sockets_bound(
        &mut self,
        now: Instant,
        id: RequestId,
        b: Result<Vec<SocketAddr>, BindError>,
    ) {
        self.inner.sockets_bound(now, id, b);
    }
    fn set_peer(&mut self, peer: SocketAddr) {
        self.inner.set_peer(peer);
    }
}

/// One call: the connected socket, the remote side, and the local one.
pub struct Call {
    /// Connected to the remote server.
    pub sock: tokio::net::TcpStream,
    /// Publish to it (a push) or play from it (an edge).
    pub mode: ClientMode,
    /// The remote stream.
    pub target: ClientTarget,
    /// The local key.
    pub key: StreamKey,
    /// What is asked of the local engine (play for a push, publish for an
    /// edge).
    pub action: Action,
    /// The protocol name the engine sees.
    pub protocol: &'static str,
    /// The remote URL as logged.
    pub shown: String,
}

/// How a call ended.
pub struct Outcome {
    /// Whether the remote server took the publish or started the play.
    pub streamed: bool,
    /// The session's end, if it said.
    pub end: Option<SessionEnd>,
}

impl Outcome {
    /// The end in words.
    pub fn why(&self) -> String {
        self.end
            .as_ref()
            .map_or_else(|| "connection closed".to_string(), |e| e.to_string())
    }

    /// Whether the remote server said it has no such stream.
    pub fn not_found(&self) -> bool {
        matches!(
            self.end
                .as_ref()
                .and_then(|e| e.protocol_error())
                .and_then(|e| e.downcast_ref::<RtmpError>()),
            Some(RtmpError::Refused {
                status: StatusCode::PlayStreamNotFound,
                ..
            })
        )
    }
}

/// Runs one call until it ends or `stop`.
pub async fn run(
    call: Call,
    engine: &Engine,
    clock: Clock,
    stop: ShutdownSignal,
    cfg: &ListenerConfig,
    log: &Log,
) -> Outcome {
    let now = clock.now();
    let end = Arc::new(Mutex::new(None));
    let streamed = Arc::new(AtomicBool::new(false));
    let relay = Relay {
        inner: ClientSession::new(RtmpConfig::default(), call.mode, call.target, now),
        protocol: call.protocol,
        ask: Some(StreamRequest {
            id: RequestId(1),
            action: call.action,
            app: call.key.app().into(),
            stream: call.key.stream().into(),
            token: None,
            user: None,
            password: None,
            digest: None,
        }),
        ask_when_streaming: call.mode == ClientMode::Play,
        end: end.clone(),
        streamed: streamed.clone(),
    };
    let conn = ConnContext {
        peer: Some(call.shown),
        peer_addr: call.sock.peer_addr().ok(),
        unix_base: clock.unix_base(),
        started: now,
        handshake_timeout: Some(Duration::from_secs(15)),
        idle_timeout: cfg.idle_timeout,
        ..ConnContext::default()
    };
    let l = log.clone();
    let _ = drive_stream(
        call.sock,
        Conductor::new(engine.clone(), relay, conn),
        clock,
        stop,
        cfg.driver.clone(),
        &move |line| l(line),
    )
    .await;
    let end = end.lock().ok().and_then(|e| e.clone());
    Outcome {
        streamed: streamed.load(Ordering::Relaxed),
        end,
    }
}
