//! The adapter conformance suite: the same RTMP scenarios over loopback
//! sockets against the tokio, smol and blocking adapters, with our own RTMP
//! client sessions as peers.

mod common;

use arcly_core::engine::{Action, Engine, HmacTokenAuthenticator, StreamKey};
use arcly_core::frame::FrameKind;
use arcly_rtmp::ClientMode;
use common::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn publisher(server: &Server, stream: &str) -> Client {
    let mut p = Client::connect(server.addr, ClientMode::Publish, "live", stream);
    assert!(
        p.until(T, |c| c.seen.streaming),
        "publisher never started: {:?}",
        p.seen.closed
    );
    p
}

fn player(server: &Server, stream: &str) -> Client {
    let mut c = Client::connect(server.addr, ClientMode::Play, "live", stream);
    assert!(
        c.until(T, |c| c.seen.streaming),
        "player never started: {:?}",
        c.seen.closed
    );
    c
}

fn publish_and_play(adapter: Adapter) {
    let server = start_rtmp(adapter, Engine::default());
    let mut p = publisher(&server, "a");
    let media = frames(90, 30, 2000);
    // The player joins before any media: it must get every frame.
    let mut c = player(&server, "a");
    p.publish_all(tracks(), &media);
    let n = media.len();
    assert!(
        c.until(T, |c| c.seen.frames.len() >= n),
        "{adapter:?}: player got {} of {n} frames",
        c.seen.frames.len()
    );
    let got: Vec<(u32, i64, bool)> = c
        .seen
        .frames
        .iter()
        .map(|f| (frame_index(f), f.dts.as_millis(), f.is_key()))
        .collect();
    let want: Vec<(u32, i64, bool)> = media
        .iter()
        .map(|f| (frame_index(f), f.dts.as_millis(), f.is_key()))
        .collect();
    // Timestamps are rebased per player: compare relative to the first.
    let rebase = |v: &[(u32, i64, bool)]| -> Vec<(u32, i64, bool)> {
        let t0 = v[0].1;
        v.iter().map(|&(i, t, k)| (i, t - t0, k)).collect()
    };
    assert_eq!(rebase(&got), rebase(&want), "{adapter:?}: frames differ");
    for (g, w) in c.seen.frames.iter().zip(&media) {
        assert_eq!(
            g.payload,
            w.payload,
            "{adapter:?}: payload of frame {}",
            frame_index(w)
        );
    }
    let t = c.seen.tracks.as_ref().expect("tracks");
    assert_eq!(
        t.video().map(|v| v.config.clone()),
        tracks().video().map(|v| v.config.clone())
    );
    drop(p);
    // Publisher gone: the player is told and the stream is gone.
    assert!(
        c.until(T, |c| c.seen.closed.is_some() || c.is_eof()),
        "{adapter:?}: player not ended"
    );
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        server.engine.streams().is_empty()
    });
    assert!(
        gone,
        "{adapter:?}: stream still listed after its publisher left"
    );
    let took = server.shutdown();
    assert!(
        took < Duration::from_secs(3),
        "{adapter:?}: shutdown took {took:?}"
    );
}

fn auth_accept_and_reject(adapter: Adapter) {
    let auth = Arc::new(HmacTokenAuthenticator::new("secret"));
    let engine = Engine::builder().authenticator(auth.clone()).build();
    let server = start_rtmp(adapter, engine);
    let mut bad = Client::connect(server.addr, ClientMode::Publish, "live", "s?token=123.abcd");
    bad.until(Duration::from_secs(3), |c| {
        c.seen.closed.is_some() || c.is_eof()
    });
    assert!(!bad.seen.streaming, "{adapter:?}: a bad token was accepted");
    assert!(server.engine.streams().is_empty());
    let key = StreamKey::new("live", "s").expect("key");
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = auth.mint(Action::Publish, &key, unix + 600);
    let mut good = Client::connect(
        server.addr,
        ClientMode::Publish,
        "live",
        &format!("s?token={token}"),
    );
    assert!(
        good.until(T, |c| c.seen.streaming),
        "{adapter:?}: a good token was refused: {:?}",
        good.seen.closed
    );
    assert_eq!(server.engine.streams().len(), 1);
    // Playing is protected too, and a publish token does not play.
    let mut player = Client::connect(
        server.addr,
        ClientMode::Play,
        "live",
        &format!("s?token={token}"),
    );
    player.until(Duration::from_secs(3), |c| {
        c.seen.closed.is_some() || c.is_eof()
    });
    assert!(
        !player.seen.streaming,
        "{adapter:?}: a publish token played"
    );
}

fn late_joiners_start_on_keyframes(adapter: Adapter) {
    let server = start_rtmp(adapter, Engine::default());
    let mut p = publisher(&server, "k");
    let media = frames(120, 30, 500);
    let key = StreamKey::new("live", "k").expect("key");
    let published = |n: u64| {
        (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            server
                .engine
                .stream(&key)
                .is_some_and(|s| s.stats.frames.load(Ordering::Relaxed) >= n)
        })
    };
    p.publish_all(tracks(), &media[..200]);
    assert!(
        published(200),
        "{adapter:?}: the server did not take 200 frames: {:?}",
        server
            .engine
            .stream(&key)
            .map(|s| s.stats.frames.load(Ordering::Relaxed))
    );
    let mut first = player(&server, "k");
    assert!(first.until(T, |c| !c.seen.frames.is_empty()));
    p.publish_all(tracks(), &media[200..]);
    assert!(
        published(240),
        "{adapter:?}: the server did not take 240 frames"
    );
    let mut second = player(&server, "k");
    assert!(second.until(T, |c| !c.seen.frames.is_empty()));
    for (name, c) in [("first", &first), ("second", &second)] {
        let f = &c.seen.frames[0];
        assert_eq!(
            f.kind,
            FrameKind::Key,
            "{adapter:?}: {name} player started on a non-key frame"
        );
        assert_eq!(frame_index(f) % 30, 0);
    }
    // The first joined after video frame 99 (GOP cache from the key frame
    // at 90); the second after frame 119 (again from 90, the last key).
    assert_eq!(frame_index(&first.seen.frames[0]), 90);
    assert_eq!(frame_index(&second.seen.frames[0]), 90);
    assert!(first.until(T, |c| c.seen.frames.iter().any(|f| frame_index(f) == 119)));
}

fn stalled_player_does_not_hurt_others(adapter: Adapter) {
    let engine = Engine::builder()
        .default_app(Some(
            arcly_core::engine::AppSpec::new("*")
                .ring_capacity(256)
                .lag_limit(1024),
        ))
        .build();
    let server = start_rtmp(adapter, engine);
    let mut p = publisher(&server, "st");
    p.publish_all(tracks(), &frames(1, 30, 100));
    // A player that completes its handshake and play, then never reads.
    let mut stalled = player(&server, "st");
    let mut healthy = player(&server, "st");
    let media = frames(1500, 30, 20_000);
    let start = std::time::Instant::now();
    for chunk in media[2..].chunks(100) {
        p.publish_all(tracks(), chunk);
        healthy.until(Duration::from_millis(50), |_| false);
    }
    let publish_time = start.elapsed();
    // Roughly 60 MB went out to the healthy player while the stalled one
    // read nothing. The publisher was never held up by the stall.
    assert!(
        publish_time < Duration::from_secs(20),
        "{adapter:?}: publishing took {publish_time:?}"
    );
    assert!(
        healthy.until(T, |c| c.seen.frames.iter().any(|f| frame_index(f) == 1499)),
        "{adapter:?}: healthy player did not get the last frame"
    );
    // The stalled player: its socket buffer filled, its subscription lagged
    // (resuming at key frames) or it was evicted. Reading it now must show
    // only key-frame-aligned resumption, never a mid-GOP jump.
    stalled.until(Duration::from_secs(3), |_| false);
    let mut last: Option<u32> = None;
    let mut jumps = 0;
    for f in stalled.seen.frames.iter().filter(|f| f.codec.is_video()) {
        let i = frame_index(f);
        if let Some(l) = last {
            if i != l + 1 {
                jumps += 1;
                assert_eq!(
                    i % 30,
                    0,
                    "{adapter:?}: stalled player resumed mid-GOP at {i} after {l}"
                );
            }
        }
        last = Some(i);
    }
    // It really fell behind: frames were skipped, or it was evicted.
    assert!(
        jumps > 0 || stalled.is_eof() || stalled.seen.closed.is_some(),
        "{adapter:?}: the stalled player never lagged"
    );
}

fn shutdown_closes_live_connections(adapter: Adapter) {
    let server = start_rtmp(adapter, Engine::default());
    let mut p = publisher(&server, "sd");
    p.publish_all(tracks(), &frames(10, 5, 100));
    let mut c = player(&server, "sd");
    assert!(c.until(T, |c| !c.seen.frames.is_empty()));
    let took = server.shutdown();
    assert!(
        took < Duration::from_secs(3),
        "{adapter:?}: shutdown took {took:?}"
    );
    assert!(
        c.until(T, |c| c.is_eof()),
        "{adapter:?}: player socket not closed"
    );
    assert!(
        p.until(T, |c| c.is_eof()),
        "{adapter:?}: publisher socket not closed"
    );
}

/// The HTTP session on the same adapters: pipelined keep-alive requests for
/// the stream list, answered in order, and a clear 404.
fn http_api(adapter: Adapter) {
    use std::io::{Read, Write};
    let engine = Engine::default();
    let _p = engine
        .publish(
            &arcly_core::engine::Request::new(StreamKey::new("live", "api").expect("key"), "test"),
            arcly_core::time::Instant::ZERO,
        )
        .expect("publish");
    let server = start_http(adapter, engine);
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /api/streams HTTP/1.1\r\n\r\nGET /live/none/index.m3u8 HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let first = out.find("HTTP/1.1 200").expect("a 200 answer");
    let second = out.find("HTTP/1.1 404").expect("a 404 answer");
    assert!(first < second, "{adapter:?}: answers out of order:\n{out}");
    assert!(out.contains("\"stream\":\"api\""), "{adapter:?}: {out}");
    server.shutdown();
}

/// With a merge window, a player still gets every frame, in order and
/// unchanged, but in a few large writes: frames published 10 ms apart
/// reach it in about one read per window, not one per frame.
fn merged_writes_carry_every_frame(adapter: Adapter) {
    let server = start_rtmp_merging(adapter, Engine::default(), Duration::from_millis(100));
    let mut p = publisher(&server, "m");
    let mut c = player(&server, "m");
    let media = frames(40, 30, 800);
    p.publish_all(tracks(), &media[..1]);
    // Reads that brought frames.
    let mut arrivals = 0;
    let mut turn = |c: &mut Client| {
        let before = c.seen.frames.len();
        c.turn();
        if c.seen.frames.len() > before {
            arrivals += 1;
        }
    };
    for f in &media[1..] {
        p.publish_frame(f);
        std::thread::sleep(Duration::from_millis(10));
        turn(&mut c);
    }
    let n = media.len();
    let end = std::time::Instant::now() + T;
    while c.seen.frames.len() < n && std::time::Instant::now() < end {
        turn(&mut c);
    }
    let got: Vec<u32> = c.seen.frames.iter().map(frame_index).collect();
    let want: Vec<u32> = media.iter().map(frame_index).collect();
    assert_eq!(got, want, "{adapter:?}: frames differ");
    for (g, w) in c.seen.frames.iter().zip(&media) {
        assert_eq!(g.payload, w.payload, "{adapter:?}: a payload differs");
    }
    // 79 frames over at least 790 ms: 8 windows or so, each read in one or
    // two pieces; one read per frame (no merging) would be 79.
    assert!(
        arrivals <= 30,
        "{adapter:?}: {arrivals} reads brought the {n} frames"
    );
    drop(p);
    server.shutdown();
}

macro_rules! suite {
    ($m:ident, $a:expr) => {
        mod $m {
            use super::*;
            #[test]
            fn publish_and_play() {
                super::publish_and_play($a)
            }
            #[test]
            fn auth_accept_and_reject() {
                super::auth_accept_and_reject($a)
            }
            #[test]
            fn late_joiners_start_on_keyframes() {
                super::late_joiners_start_on_keyframes($a)
            }
            #[test]
            fn stalled_player_does_not_hurt_others() {
                super::stalled_player_does_not_hurt_others($a)
            }
            #[test]
            fn shutdown_closes_live_connections() {
                super::shutdown_closes_live_connections($a)
            }
            #[test]
            fn http_api() {
                super::http_api($a)
            }
            #[test]
            fn datagram_publish_and_play() {
                super::datagram_publish_and_play($a)
            }
            #[test]
            fn datagram_session_owned_sockets() {
                super::datagram_session_owned_sockets($a)
            }
            #[test]
            fn hls_playlist_and_segments() {
                super::hls_playlist_and_segments($a)
            }
            #[test]
            fn hls_ll_parts_and_blocking_reload() {
                super::hls_ll_parts_and_blocking_reload($a)
            }
            #[test]
            fn merged_writes_carry_every_frame() {
                super::merged_writes_carry_every_frame($a)
            }
        }
    };
}

suite!(tokio_adapter, Adapter::Tokio);
suite!(smol_adapter, Adapter::Smol);
suite!(blocking_adapter, Adapter::Blocking);

/// The toy datagram protocol (`arcly_core::sim::toy`) served through an
/// endpoint on one UDP socket of `adapter`; returns the socket's address and
/// the server (stopped on drop).
fn start_endpoint(adapter: Adapter, engine: Engine) -> (std::net::SocketAddr, Server) {
    use arcly_core::endpoint::EndpointHost;
    use arcly_core::session::ConnContext;
    use arcly_core::sim::toy::ToyEndpoint;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = sock.local_addr().expect("addr");
    let host = EndpointHost::new(
        ToyEndpoint::default(),
        engine.clone(),
        ConnContext::default(),
    );
    let log: Arc<dyn Fn(String) + Send + Sync> = Arc::new(|_| {});
    let (stop, thread): (Box<dyn FnOnce() + Send>, _) = match adapter {
        Adapter::Tokio => {
            let shutdown = arcly_tokio::Shutdown::new();
            let signal = shutdown.signal();
            sock.set_nonblocking(true).expect("nonblocking");
            let th = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let sock = tokio::net::UdpSocket::from_std(sock).expect("udp");
                    let clock = arcly_tokio::Clock::new();
                    arcly_tokio::drive_endpoint(sock, host, clock, signal, &*log)
                        .await
                        .expect("drive");
                });
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Smol => {
            let shutdown = arcly_smol::Shutdown::new();
            let signal = shutdown.signal();
            let th = std::thread::spawn(move || {
                let sock = async_io::Async::new(sock).expect("udp");
                let clock = arcly_smol::Clock::new();
                smol::block_on(arcly_smol::drive_endpoint(sock, host, clock, signal, &*log))
                    .expect("drive");
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Blocking => {
            let shutdown = arcly_blocking::ShutdownHandle::new();
            let s2 = shutdown.clone();
            let th = std::thread::spawn(move || {
                let clock = arcly_blocking::Clock::new();
                arcly_blocking::serve_endpoint(sock, host, clock, s2, log).expect("drive");
            });
            (Box::new(move || shutdown.trigger()), th)
        }
    };
    (addr, Server::from_parts(addr, engine, stop, thread))
}

/// A toy peer on its own UDP socket.
struct ToyPeer {
    sock: std::net::UdpSocket,
    server: std::net::SocketAddr,
    id: u32,
}

impl ToyPeer {
    fn hello(server: std::net::SocketAddr, what: &str) -> ToyPeer {
        use arcly_core::sim::toy::{header, msg, HELLO, WELCOME};
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        // UDP: say hello again until welcomed.
        for _ in 0..25 {
            sock.send_to(&msg(0, HELLO, what.as_bytes()), server)
                .expect("send");
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if let Some((id, WELCOME)) = header(&buf[..n]) {
                    return ToyPeer { sock, server, id };
                }
            }
        }
        panic!("no welcome for {what:?}");
    }

    fn recv_frames(&self, want: usize, limit: Duration) -> Vec<i64> {
        use arcly_core::sim::toy::{frame_pts, header, FRAME};
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let end = std::time::Instant::now() + limit;
        while got.len() < want && std::time::Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                if let (Some((_, FRAME)), Some(pts)) = (header(&buf[..n]), frame_pts(&buf[..n])) {
                    got.push(pts);
                }
            }
        }
        got
    }
}

fn datagram_publish_and_play(adapter: Adapter) {
    use arcly_core::sim::toy::{msg, FRAME, PING};
    let (addr, server) = start_endpoint(adapter, Engine::default());
    // A ping is answered by the endpoint alone.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    probe.send_to(&msg(0, PING, b""), addr).expect("ping");
    let mut buf = [0u8; 64];
    let (n, _) = probe.recv_from(&mut buf).expect("pong");
    assert_eq!(&buf[5..n], b"pong", "{adapter:?}");
    let publisher = ToyPeer::hello(addr, "publish cam");
    let player = ToyPeer::hello(addr, "play cam");
    assert_ne!(publisher.id, player.id);
    // Loopback does not lose datagrams at this rate: every frame arrives,
    // in order.
    for pts in 0..200i64 {
        publisher
            .sock
            .send_to(
                &msg(publisher.id, FRAME, &pts.to_be_bytes()),
                publisher.server,
            )
            .expect("frame");
        if pts % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let got = player.recv_frames(200, T);
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "{adapter:?}");
    assert!(server.shutdown() < Duration::from_secs(3));
}

/// A stream session that plays over UDP from sockets it asks its host for,
/// as RTSP does: the peer sends `play NAME\n` on TCP; the session asks for
/// an even/odd UDP pair and answers `ports A B\n`; the peer's first
/// datagram to A tells the session where to send; each frame goes out from
/// A as its pts (`i64`), and a datagram to B is echoed back from B.
#[derive(Default)]
struct UdpPlay {
    buf: Vec<u8>,
    ports: Vec<std::net::SocketAddr>,
    peer_rtp: Option<std::net::SocketAddr>,
    out: std::collections::VecDeque<arcly_core::session::Transmit>,
    events: std::collections::VecDeque<arcly_core::session::SessionEvent>,
    closed: bool,
}

impl arcly_core::session::Session for UdpPlay {
    fn protocol(&self) -> &'static str {
        "udp-play"
    }
    fn handle_input(&mut self, _now: arcly_core::time::Instant, input: arcly_core::session::Input) {
        use arcly_core::session::{Input, RequestId, SessionEvent, StreamRequest, Transmit};
        match input {
            Input::Stream(b) => {
                self.buf.extend_from_slice(&b);
                while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line[..i]).to_string();
                    if let Some(name) = line.strip_prefix("play ") {
                        self.events.push_back(SessionEvent::Request(StreamRequest {
                            id: RequestId(1),
                            action: Action::Play,
                            app: "live".into(),
                            stream: name.into(),
                            token: None,
                            user: None,
                            password: None,
                            digest: None,
                        }));
                    }
                }
            }
            Input::Datagram { from, local, data } => {
                if Some(local) == self.ports.first().copied() {
                    self.peer_rtp = Some(from);
                } else if Some(local) == self.ports.get(1).copied() {
                    self.out
                        .push_back(Transmit::datagram(Some(local), from, data.freeze()));
                }
            }
            _ => self.closed = true,
        }
    }
    fn handle_delivery(
        &mut self,
        _now: arcly_core::time::Instant,
        d: arcly_core::bus::DeliveryRef<'_>,
    ) {
        if let (arcly_core::bus::DeliveryRef::Frame(f), Some(to), Some(from)) =
            (d, self.peer_rtp, self.ports.first())
        {
            self.out.push_back(arcly_core::session::Transmit::datagram(
                Some(*from),
                to,
                bytes::Bytes::from(f.pts.ticks.to_be_bytes().to_vec()),
            ));
        }
    }
    fn handle_stream_end(&mut self, _: arcly_core::time::Instant, _: arcly_core::bus::RecvError) {
        self.closed = true;
    }
    fn handle_timeout(&mut self, _: arcly_core::time::Instant) {}
    fn accept(&mut self, _: arcly_core::time::Instant, _: arcly_core::session::RequestId) {
        use arcly_core::session::{RequestId, SessionEvent, SocketKind, SocketRequest};
        self.events.push_back(SessionEvent::Sockets(SocketRequest {
            id: RequestId(2),
            kind: SocketKind::UdpPair { ip: None },
        }));
    }
    fn reject(
        &mut self,
        _: arcly_core::time::Instant,
        _: arcly_core::session::RequestId,
        _: arcly_core::session::Rejection,
    ) {
        self.closed = true;
    }
    fn close(&mut self, _: arcly_core::time::Instant, _: arcly_core::bus::CloseReason) {
        self.closed = true;
    }
    fn sockets_bound(
        &mut self,
        _: arcly_core::time::Instant,
        _: arcly_core::session::RequestId,
        bound: Result<Vec<std::net::SocketAddr>, arcly_core::session::BindError>,
    ) {
        let line = match bound {
            Ok(a) => {
                let line = format!("ports {} {}\n", a[0].port(), a[1].port());
                self.ports = a;
                line
            }
            Err(e) => format!("no ports {e:?}\n"),
        };
        self.out
            .push_back(arcly_core::session::Transmit::stream(bytes::Bytes::from(
                line,
            )));
    }
    fn poll_transmit(&mut self) -> Option<arcly_core::session::Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<arcly_core::session::SessionEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<arcly_core::time::Instant> {
        None
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
}

fn datagram_session_owned_sockets(adapter: Adapter) {
    use arcly_core::engine::Request;
    use arcly_core::frame::{CodecId, MediaFrame, TrackId};
    use arcly_core::time::{Instant, MediaTime};
    use std::io::{BufRead, Write};
    let engine = Engine::default();
    let server = start_server(adapter, engine.clone(), |_| UdpPlay::default(), None);
    let key = StreamKey::new("live", "udp").expect("key");
    let req = Request::new(key.clone(), "test");
    let mut publisher = engine.publish(&req, Instant::ZERO).expect("publish");
    publisher.set_tracks(tracks());
    let key_frame = |pts: i64| {
        MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            true,
            MediaTime::from_millis(pts),
            bytes::Bytes::new(),
        )
    };
    publisher
        .publish(Instant::ZERO, key_frame(0))
        .expect("frame");
    let mut tcp = std::net::TcpStream::connect(server.addr).expect("connect");
    tcp.write_all(b"play udp\n").expect("play");
    let mut line = String::new();
    std::io::BufReader::new(tcp.try_clone().expect("clone"))
        .read_line(&mut line)
        .expect("ports");
    let ports: Vec<u16> = line
        .trim()
        .strip_prefix("ports ")
        .unwrap_or_else(|| panic!("{adapter:?}: {line:?}"))
        .split(' ')
        .map(|p| p.parse().expect("port"))
        .collect();
    assert_eq!(ports[0] % 2, 0, "{adapter:?}: RTP on an even port");
    assert_eq!(ports[1], ports[0] + 1, "{adapter:?}: RTCP on the next");
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    rtp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let rtp_server = std::net::SocketAddr::from(([127, 0, 0, 1], ports[0]));
    let rtcp_server = std::net::SocketAddr::from(([127, 0, 0, 1], ports[1]));
    // The echo on the second socket comes back from it.
    rtp.send_to(b"rtcp?", rtcp_server).expect("rtcp");
    let mut buf = [0u8; 64];
    let (n, from) = rtp.recv_from(&mut buf).expect("echo");
    assert_eq!(
        (&buf[..n], from),
        (&b"rtcp?"[..], rtcp_server),
        "{adapter:?}"
    );
    rtp.send_to(b"hello", rtp_server).expect("hello");
    std::thread::sleep(Duration::from_millis(50));
    let mut got = Vec::new();
    let mut pts = 1;
    let end = std::time::Instant::now() + T;
    while got.len() < 50 && std::time::Instant::now() < end {
        if pts <= 50 {
            publisher
                .publish(Instant::ZERO, key_frame(pts))
                .expect("frame");
            pts += 1;
        }
        if let Ok((n, from)) = rtp.recv_from(&mut buf) {
            assert_eq!(
                from, rtp_server,
                "{adapter:?}: frames come from the RTP socket"
            );
            got.push(i64::from_be_bytes(buf[..n].try_into().expect("8 bytes")));
        }
    }
    assert_eq!(got, (1..=50).collect::<Vec<i64>>(), "{adapter:?}");
    drop(tcp);
    server.shutdown();
}

/// An HTTP server with the HLS origin on `adapter`, its engine packaging
/// every stream through a consumer the adapter drives (`drive_taps`).
fn start_hls(adapter: Adapter, parts: bool) -> (Server, Engine, Server) {
    let cfg = arcly_core::media::hls::HlsConfig {
        part_duration_us: parts.then_some(200_000),
        ..Default::default()
    };
    let origin = arcly_http::HlsOrigin::new(cfg, Duration::ZERO);
    let engine = Engine::builder()
        .consumer(origin.consumer_factory(0))
        .build();
    let router = Arc::new(arcly_http::Router::new(engine.clone(), origin, 0));
    let http = start_server(
        adapter,
        engine.clone(),
        move |_now| arcly_http::HttpSession::new(arcly_http::HttpConfig::default(), router.clone()),
        None,
    );
    let e = engine.clone();
    let (stop, thread): (Box<dyn FnOnce() + Send>, _) = match adapter {
        Adapter::Tokio => {
            let shutdown = arcly_tokio::Shutdown::new();
            let signal = shutdown.signal();
            let th = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(arcly_tokio::drive_taps(
                    e,
                    arcly_tokio::Clock::new(),
                    signal,
                ));
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Smol => {
            let shutdown = arcly_smol::Shutdown::new();
            let signal = shutdown.signal();
            let th = std::thread::spawn(move || {
                smol::block_on(arcly_smol::drive_taps(e, arcly_smol::Clock::new(), signal))
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Blocking => {
            let shutdown = arcly_blocking::ShutdownHandle::new();
            let s2 = shutdown.clone();
            let th = std::thread::spawn(move || {
                arcly_blocking::drive_taps(&e, arcly_blocking::Clock::new(), &s2)
            });
            (Box::new(move || shutdown.trigger()), th)
        }
    };
    let taps = Server::from_parts(http.addr, engine.clone(), stop, thread);
    (http, engine, taps)
}

/// One HTTP/1.1 GET with `Connection: close`: status and body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer to {path}: {:?}", String::from_utf8_lossy(&out)));
    let head = String::from_utf8_lossy(&out[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, out[head_end + 4..].to_vec())
}

/// Publishes `frames` straight into the engine under live/`name`.
fn publish_frames(
    engine: &Engine,
    name: &str,
    media: &[arcly_core::frame::MediaFrame],
) -> arcly_core::engine::Publisher {
    use arcly_core::engine::Request;
    use arcly_core::time::Instant;
    let key = StreamKey::new("live", name).expect("key");
    let mut p = engine
        .publish(&Request::new(key, "test"), Instant::ZERO)
        .expect("publish");
    p.set_tracks(tracks());
    for f in media {
        p.publish(Instant::ZERO, f.clone()).expect("frame");
    }
    p
}

/// The URIs a media playlist lists (segments and parts).
fn listed(playlist: &str) -> (Vec<String>, Vec<String>) {
    let segs = playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let parts = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(String::from)
        .collect();
    (segs, parts)
}

fn hls_playlist_and_segments(adapter: Adapter) {
    let (http, engine, taps) = start_hls(adapter, false);
    // 10 s of H.264 + AAC, a key frame every second.
    let _p = publish_frames(&engine, "hls", &frames(300, 30, 1500));
    let mut text = String::new();
    let end = std::time::Instant::now() + T;
    while std::time::Instant::now() < end {
        let (status, body) = http_get(http.addr, "/live/hls/media.m3u8");
        text = String::from_utf8_lossy(&body).to_string();
        if status == 200 && listed(&text).0.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (segs, _) = listed(&text);
    assert!(segs.len() >= 3, "{adapter:?}: {text}");
    let map = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("{adapter:?}: no EXT-X-MAP in {text}"));
    let (status, init) = http_get(http.addr, &format!("/live/hls/{map}"));
    assert_eq!(status, 200, "{adapter:?}: {map}");
    assert_eq!(
        &init[4..8],
        b"ftyp",
        "{adapter:?}: an fMP4 initialisation section"
    );
    for s in &segs {
        let (status, data) = http_get(http.addr, &format!("/live/hls/{s}"));
        assert_eq!(status, 200, "{adapter:?}: {s}");
        assert!(
            data.windows(4).any(|w| w == b"moof"),
            "{adapter:?}: {s} holds a fragment"
        );
    }
    let (status, index) = http_get(http.addr, "/live/hls/index.m3u8");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&index).contains("media.m3u8"));
    drop(_p);
    taps.shutdown();
    http.shutdown();
}

fn hls_ll_parts_and_blocking_reload(adapter: Adapter) {
    let (http, engine, taps) = start_hls(adapter, true);
    let media = frames(450, 30, 1500);
    // The first 6 s now; the rest after a blocking request is waiting.
    let mut p = publish_frames(&engine, "ll", &media[..360]);
    let mut text = String::new();
    let end = std::time::Instant::now() + T;
    while std::time::Instant::now() < end {
        let (status, body) = http_get(http.addr, "/live/ll/media.m3u8");
        text = String::from_utf8_lossy(&body).to_string();
        if status == 200 && !listed(&text).1.is_empty() && listed(&text).0.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        text.contains("#EXT-X-PART-INF:") && text.contains("CAN-BLOCK-RELOAD=YES"),
        "{adapter:?}: {text}"
    );
    let (_, parts) = listed(&text);
    let (status, part) = http_get(http.addr, &format!("/live/ll/{}", parts[0]));
    assert_eq!(status, 200, "{adapter:?}");
    assert!(
        part.windows(4).any(|w| w == b"moof"),
        "{adapter:?}: a part is a fragment"
    );
    // Ask for the segment after the last listed one: the answer waits for
    // it, then lists it.
    let msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a media sequence");
    let next = msn + listed(&text).0.len() as u64 + 1;
    let addr = http.addr;
    let waiting = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = http_get(
            addr,
            &format!("/live/ll/media.m3u8?_HLS_msn={next}&_HLS_part=0"),
        );
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    for f in &media[360..] {
        p.publish(arcly_core::time::Instant::ZERO, f.clone())
            .expect("frame");
    }
    let ((status, body), waited) = waiting.join().expect("blocking request");
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{adapter:?}: {body}");
    assert!(
        waited >= Duration::from_millis(400),
        "{adapter:?}: answered after {waited:?}, before the part existed"
    );
    let (segs, _) = listed(&body);
    assert!(
        body.lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .any(|m| m + segs.len() as u64 >= next),
        "{adapter:?}: the blocking answer lists segment {next}:\n{body}"
    );
    drop(p);
    taps.shutdown();
    http.shutdown();
}
