//! Shared pieces of the cross-crate tests: the three adapters behind one
//! start/stop interface, a blocking driver for our RTMP client sessions, and
//! synthetic H.264 + AAC media with real parameter sets.

#![allow(dead_code)]

pub mod media;
pub mod peers;
pub mod relay;

use arcly_core::engine::Engine;
use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::session::{Input, Session, SessionEvent};
use arcly_core::time::{Instant, MediaTime, Timescale};
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig, ServerSession};
use bytes::{Bytes, BytesMut};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which executor adapter runs the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    Tokio,
    Smol,
    Blocking,
}

pub const ADAPTERS: [Adapter; 3] = [Adapter::Tokio, Adapter::Smol, Adapter::Blocking];

/// A running RTMP server on one adapter.
pub struct Server {
    pub addr: SocketAddr,
    pub engine: Engine,
    /// The runtime serving, on the tokio adapter (for its task metrics).
    pub tokio: Option<tokio::runtime::Handle>,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// A server whose serving thread the caller started, stopped by `stop`.
    pub fn from_parts(
        addr: SocketAddr,
        engine: Engine,
        stop: Box<dyn FnOnce() + Send>,
        thread: std::thread::JoinHandle<()>,
    ) -> Server {
        Server {
            addr,
            engine,
            tokio: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Triggers graceful shutdown and waits for the serving thread; returns
    /// how long that took.
    pub fn shutdown(mut self) -> Duration {
        let t = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(th) = self.thread.take() {
            th.join().expect("server thread");
        }
        t.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(th) = self.thread.take() {
            let _ = th.join();
        }
    }
}

static SEED: AtomicU64 = AtomicU64::new(1);

fn rtmp_session(now: Instant) -> ServerSession {
    let cfg = RtmpConfig {
        seed: SEED.fetch_add(1, Ordering::Relaxed),
        ..RtmpConfig::default()
    };
    ServerSession::new(cfg, now)
}

fn quiet() -> Arc<dyn Fn(String) + Send + Sync> {
    Arc::new(|line: String| {
        if std::env::var_os("ARCLY_TEST_LOG").is_some() {
            eprintln!("{line}");
        }
    })
}

/// Starts an RTMP server for `engine` on 127.0.0.1 with `adapter`.
pub fn start_rtmp(adapter: Adapter, engine: Engine) -> Server {
    start_server(adapter, engine, rtmp_session, Some(Duration::from_secs(10)))
}

/// Starts an HTTP server (the gateway's router, HLS origin included) for
/// `engine` on 127.0.0.1 with `adapter`.
pub fn start_http(adapter: Adapter, engine: Engine) -> Server {
    let origin = arcly_http::HlsOrigin::new(Default::default(), Duration::from_secs(10));
    let router = Arc::new(arcly_http::Router::new(engine.clone(), origin, 0));
    start_server(
        adapter,
        engine,
        move |_now| arcly_http::HttpSession::new(arcly_http::HttpConfig::default(), router.clone()),
        None,
    )
}

/// Starts a server running sessions made by `make`.
pub fn start_server<S, F>(
    adapter: Adapter,
    engine: Engine,
    make: F,
    handshake: Option<Duration>,
) -> Server
where
    S: Session + Send + 'static,
    F: Fn(Instant) -> S + Send + Sync + 'static,
{
    start_server_merging(adapter, engine, make, handshake, Duration::ZERO)
}

/// Starts an RTMP server whose players take their frames in writes merged
/// over `merge`.
pub fn start_rtmp_merging(adapter: Adapter, engine: Engine, merge: Duration) -> Server {
    start_server_merging(
        adapter,
        engine,
        rtmp_session,
        Some(Duration::from_secs(10)),
        merge,
    )
}

/// [`start_server`] with players' writes merged over `merge`.
pub fn start_server_merging<S, F>(
    adapter: Adapter,
    engine: Engine,
    make: F,
    handshake: Option<Duration>,
    merge: Duration,
) -> Server
where
    S: Session + Send + 'static,
    F: Fn(Instant) -> S + Send + Sync + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = std_listener.local_addr().expect("addr");
    let e = engine.clone();
    let (htx, hrx) = std::sync::mpsc::channel();
    let (stop, thread): (Box<dyn FnOnce() + Send>, _) = match adapter {
        Adapter::Tokio => {
            let shutdown = arcly_tokio::Shutdown::new();
            let signal = shutdown.signal();
            std_listener.set_nonblocking(true).expect("nonblocking");
            let th = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let _ = htx.send(rt.handle().clone());
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                    let cfg = arcly_tokio::ListenerConfig {
                        shutdown_deadline: Duration::from_secs(2),
                        handshake_timeout: handshake,
                        driver: arcly_tokio::DriverConfig {
                            merge_writes: merge,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    arcly_tokio::serve(l, e, make, cfg, arcly_tokio::Clock::new(), signal, quiet())
                        .await
                        .expect("serve");
                });
                // Dropping the runtime here would hide leaked tasks; the
                // serve call has already joined every connection task.
                rt.shutdown_timeout(Duration::from_millis(100));
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Smol => {
            let shutdown = arcly_smol::Shutdown::new();
            let signal = shutdown.signal();
            let th = std::thread::spawn(move || {
                let l = async_io::Async::new(std_listener).expect("listener");
                let cfg = arcly_smol::ListenerConfig {
                    shutdown_deadline: Duration::from_secs(2),
                    handshake_timeout: handshake,
                    driver: arcly_smol::DriverConfig {
                        merge_writes: merge,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                smol::block_on(arcly_smol::serve(
                    l,
                    e,
                    make,
                    cfg,
                    arcly_smol::Clock::new(),
                    signal,
                    quiet(),
                ))
                .expect("serve");
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Blocking => {
            let shutdown = arcly_blocking::ShutdownHandle::new();
            let s2 = shutdown.clone();
            let th = std::thread::spawn(move || {
                let cfg = arcly_blocking::ListenerConfig {
                    shutdown_deadline: Duration::from_secs(2),
                    handshake_timeout: handshake,
                    merge_writes: merge,
                    ..Default::default()
                };
                arcly_blocking::serve(
                    std_listener,
                    e,
                    make,
                    cfg,
                    arcly_blocking::Clock::new(),
                    s2,
                    quiet(),
                )
                .expect("serve");
            });
            (Box::new(move || shutdown.trigger()), th)
        }
    };
    Server {
        addr,
        engine,
        tokio: (adapter == Adapter::Tokio).then(|| hrx.recv().expect("runtime handle")),
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// The SPS and PPS of a 320x240 High-profile stream made by libx264.
pub const SPS: &str = "6764000dacd94141fb0110000003001000000303c0f1429960";
pub const PPS: &str = "68ebe3cb22c0";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// H.264 (avcC from the real SPS/PPS) + AAC-LC 48 kHz stereo.
pub fn tracks() -> TrackSet {
    let sps = hex(SPS);
    let pps = hex(PPS);
    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
    avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(&sps);
    avcc.push(1);
    avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(&pps);
    let mut t = TrackSet::new();
    t.upsert(TrackInfo::new(
        TrackId(0),
        CodecId::H264,
        Timescale::MILLIS,
        Bytes::from(avcc),
    ))
    .expect("room");
    t.upsert(TrackInfo::new(
        TrackId(1),
        CodecId::Aac,
        Timescale::MILLIS,
        Bytes::from_static(&[0x11, 0x90]),
    ))
    .expect("room");
    t
}

/// Frame `i` of a 30 fps stream with a key frame every `gop` frames, and
/// an audio frame after every video frame. Payload sizes vary; the first
/// bytes carry `i` so a receiver can check identity.
pub fn frames(n: usize, gop: usize, video_bytes: usize) -> Vec<MediaFrame> {
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = MediaTime::from_millis((i as i64 * 1000) / 30);
        let key = i % gop == 0;
        let mut nal = vec![if key { 0x65 } else { 0x41 }];
        nal.extend_from_slice(&(i as u32).to_be_bytes());
        nal.resize(video_bytes + (i * 37) % 500, 0xAB);
        let mut v = (nal.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&nal);
        out.push(MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            key,
            t,
            Bytes::from(v),
        ));
        let mut a = (i as u32).to_be_bytes().to_vec();
        a.resize(200, 0x21);
        out.push(MediaFrame::audio(
            TrackId(1),
            CodecId::Aac,
            t,
            Bytes::from(a),
        ));
    }
    out
}

/// What a client saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub frames: Vec<MediaFrame>,
    pub tracks: Option<TrackSet>,
    pub closed: Option<String>,
    pub streaming: bool,
}

/// A blocking driver for one of our RTMP client sessions over a real socket.
pub struct Client {
    sock: TcpStream,
    pub session: ClientSession,
    origin: std::time::Instant,
    pub seen: Seen,
    eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr, mode: ClientMode, app: &str, stream: &str) -> Client {
        let sock = TcpStream::connect(addr).expect("connect");
        Client::over(sock, mode, app, stream)
    }

    /// A client over a socket the caller connected (with buffer sizes or a
    /// source address of its choosing).
    pub fn over(sock: TcpStream, mode: ClientMode, app: &str, stream: &str) -> Client {
        let addr = sock.peer_addr().expect("a connected socket");
        sock.set_nodelay(true).expect("nodelay");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        let target = ClientTarget {
            app: app.into(),
            stream: stream.into(),
            tc_url: format!("rtmp://{addr}/{app}"),
        };
        let cfg = RtmpConfig {
            seed: SEED.fetch_add(1, Ordering::Relaxed),
            ..RtmpConfig::default()
        };
        let session = ClientSession::new(cfg, mode, target, Instant::ZERO);
        Client {
            sock,
            session,
            origin: std::time::Instant::now(),
            seen: Seen::default(),
            eof: false,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// One round: write what is queued, read what arrived, collect events.
    pub fn turn(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            if self.sock.write_all(&t.data).is_err() {
                self.eof = true;
                break;
            }
        }
        if !self.eof {
            let mut buf = vec![0u8; 64 * 1024];
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    let now = self.now();
                    self.session.handle_input(now, Input::Eof);
                }
                Ok(n) => {
                    let now = self.now();
                    self.session
                        .handle_input(now, Input::Stream(BytesMut::from(&buf[..n])));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    self.eof = true;
                    let now = self.now();
                    self.session.handle_input(now, Input::Eof);
                }
            }
        }
        let now = self.now();
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        while let Some(ev) = self.session.poll_event() {
            match ev {
                SessionEvent::Frame(f) => self.seen.frames.push(f),
                SessionEvent::Tracks(t) => self.seen.tracks = Some(*t),
                SessionEvent::Closed(end) => self.seen.closed = Some(format!("{end:?}")),
                SessionEvent::PublishStopped | SessionEvent::PlayStopped => {
                    self.seen.closed.get_or_insert_with(|| "stopped".into());
                }
                _ => {}
            }
        }
        while let Some(t) = self.session.poll_transmit() {
            if self.sock.write_all(&t.data).is_err() {
                self.eof = true;
                break;
            }
        }
        self.seen.streaming |= self.session.is_streaming();
    }

    /// Turns until `done` holds or `limit` passes; returns whether it held.
    pub fn until(&mut self, limit: Duration, mut done: impl FnMut(&Client) -> bool) -> bool {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            self.turn();
            if done(self) {
                return true;
            }
            if self.eof && self.session.poll_transmit().is_none() {
                self.turn();
                return done(self);
            }
        }
        false
    }

    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// The client end's address (to find the connection in /proc/net/tcp).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Publishes one frame through the client session (after
    /// [`publish_all`](Self::publish_all) sent the tracks).
    pub fn publish_frame(&mut self, frame: &MediaFrame) {
        use arcly_core::bus::DeliveryRef;
        let now = self.now();
        self.session.handle_delivery(now, DeliveryRef::Frame(frame));
        self.turn();
    }

    /// Publishes `frames` (with `tracks` first) through the client session,
    /// as a relay would: from a local bus subscription.
    pub fn publish_all(&mut self, tracks: TrackSet, frames: &[MediaFrame]) {
        use arcly_core::bus::DeliveryRef;
        let tracks = Arc::new(tracks);
        let now = self.now();
        self.session
            .handle_delivery(now, DeliveryRef::Tracks(&tracks));
        for (i, f) in frames.iter().enumerate() {
            let now = self.now();
            self.session.handle_delivery(now, DeliveryRef::Frame(f));
            // Keep the socket moving so large publishes do not deadlock.
            if i % 16 == 15 {
                self.turn();
            }
        }
        self.turn();
    }
}

/// Video/audio frame identity: the index written into the payload.
pub fn frame_index(f: &MediaFrame) -> u32 {
    let p = &f.payload;
    let at = if f.codec == CodecId::H264 { 5 } else { 0 };
    p.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(u32::MAX)
}
