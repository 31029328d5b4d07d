use super::*;
use arcly_core::session::{Input, ProtocolErrorKind, Session, SessionEnd, SessionEvent};
use arcly_core::time::Instant;
use bytes::BytesMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Toy {
    ready: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Handler for Toy {
    fn poll_response(&self, _now: Instant, req: &Request, cx: &mut Context<'_>) -> Poll<Response> {
        match req.path.as_str() {
            "/a" => Poll::Ready(Response::new(200, "text/plain", "A")),
            "/seg" => Poll::Ready(
                Response::new(200, "video/mp4", "SEGMENT").with_header("ETag", "\"s1\""),
            ),
            "/held" => {
                if self.ready.load(Ordering::SeqCst) {
                    Poll::Ready(Response::new(200, "text/plain", "late"))
                } else {
                    *self.waker.lock().unwrap() = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
            _ => Poll::Ready(Response::text(404, "no such thing")),
        }
    }
}

fn session() -> (HttpSession<Toy>, Arc<Toy>) {
    let h = Arc::new(Toy::default());
    (HttpSession::new(HttpConfig::default(), h.clone()), h)
}

fn feed(s: &mut HttpSession<Toy>, t: u64, data: &str) {
    s.handle_input(
        Instant::from_millis(t),
        Input::Stream(BytesMut::from(data.as_bytes())),
    );
}

fn out(s: &mut HttpSession<Toy>) -> String {
    let mut o = String::new();
    while let Some(t) = s.poll_transmit() {
        o.push_str(&String::from_utf8_lossy(&t.data));
    }
    o
}

#[test]
fn pipelined_answers_in_order_with_cors_head_and_404() {
    let (mut s, _) = session();
    feed(
        &mut s,
        0,
        "GET /a HTTP/1.1\r\n\r\nHEAD /a HTTP/1.1\r\n\r\nGET /zzz HTTP/1.1\r\n\r\n",
    );
    let o = out(&mut s);
    let statuses: Vec<&str> = o
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &o[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "404"]);
    assert!(o.contains("Access-Control-Allow-Origin: *"));
    // The GET has a body "A", the HEAD has Content-Length 1 and no body.
    assert_eq!(o.matches("Content-Length: 1\r\n").count(), 2);
    assert_eq!(o.matches("\r\n\r\nA").count(), 1);
    assert!(!s.is_closed());
}

#[test]
fn conditional_get_options_and_405() {
    let (mut s, _) = session();
    feed(&mut s, 0, "GET /seg HTTP/1.1\r\nIf-None-Match: \"s1\"\r\n\r\nOPTIONS /seg HTTP/1.1\r\n\r\nBREW /pot HTTP/1.1\r\n\r\n");
    let o = out(&mut s);
    assert!(o.starts_with("HTTP/1.1 304 Not Modified"));
    assert!(!o.contains("SEGMENT"));
    assert!(o.contains("HTTP/1.1 204 No Content"));
    assert!(o.contains("Access-Control-Allow-Methods"));
    assert!(o.contains("HTTP/1.1 405 Method Not Allowed"));
}

#[test]
fn held_request_answers_when_woken_and_blocks_the_pipeline_behind_it() {
    let (mut s, h) = session();
    feed(
        &mut s,
        0,
        "GET /held HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\n",
    );
    assert_eq!(out(&mut s), "");
    assert_eq!(s.poll_timeout(), Some(Instant::from_millis(10_000)));
    let woken = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let waker = Waker::from(Arc::new(Flag(woken.clone())));
    let mut cx = Context::from_waker(&waker);
    assert!(s.poll_ready(Instant::from_millis(5), &mut cx).is_pending());
    h.ready.store(true, Ordering::SeqCst);
    h.waker.lock().unwrap().take().unwrap().wake();
    assert!(woken.load(Ordering::SeqCst));
    assert!(s.poll_ready(Instant::from_millis(6), &mut cx).is_ready());
    let o = out(&mut s);
    let late = o.find("late").unwrap();
    let a = o.rfind("\r\n\r\nA").unwrap();
    assert!(late < a, "answers out of order: {o}");
}

#[test]
fn held_request_times_out_with_503() {
    let (mut s, _) = session();
    feed(&mut s, 0, "GET /held HTTP/1.1\r\n\r\n");
    s.handle_timeout(Instant::from_millis(10_000));
    assert!(out(&mut s).starts_with("HTTP/1.1 503"));
}

#[test]
fn slowloris_gets_408_and_close() {
    let (mut s, _) = session();
    feed(&mut s, 0, "GET /a HT");
    feed(&mut s, 5_000, "TP/1.1\r\nX: y");
    assert_eq!(s.poll_timeout(), Some(Instant::from_millis(10_000)));
    s.handle_timeout(Instant::from_millis(10_000));
    assert!(out(&mut s).starts_with("HTTP/1.1 408"));
    assert!(s.is_closed());
    // Slow, not malformed: a timeout.
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(SessionEnd::Timeout))
    );
}

#[test]
fn oversized_headers_get_431_and_close() {
    let (mut s, _) = session();
    feed(
        &mut s,
        0,
        &format!("GET /a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)),
    );
    assert!(out(&mut s).starts_with("HTTP/1.1 431"));
    assert!(s.is_closed());
    let e = closed_with(&mut s);
    assert_eq!(e, ParseError::HeaderTooLarge);
    assert_eq!(e.kind(), ProtocolErrorKind::LimitExceeded);
}

/// The parse error that ended the session, from its close event.
fn closed_with<H: Handler>(s: &mut HttpSession<H>) -> ParseError {
    let ev = s.poll_event();
    let Some(SessionEvent::Closed(SessionEnd::Protocol(e))) = &ev else {
        panic!("expected a protocol error, got {ev:?}");
    };
    assert_eq!(e.protocol(), "http");
    let source = e.downcast_ref::<ParseError>().expect("a ParseError");
    assert_eq!(e.kind(), &source.kind());
    source.clone()
}

#[test]
fn connection_close_is_honoured() {
    let (mut s, _) = session();
    feed(
        &mut s,
        0,
        "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /a HTTP/1.1\r\n\r\n",
    );
    let o = out(&mut s);
    assert_eq!(o.matches("HTTP/1.1 200").count(), 1);
    assert!(o.contains("Connection: close"));
    assert!(s.is_closed());
}

#[test]
fn stats_render_streams_and_metrics() {
    use arcly_core::engine::{Engine, Request as EReq, StreamKey};
    let engine = Engine::default();
    let _p = engine
        .publish(
            &EReq::new(StreamKey::new("live", "a\"b").unwrap(), "rtmp"),
            Instant::ZERO,
        )
        .unwrap();
    let link = arcly_core::engine::LinkReport {
        protocol: "srt",
        id: 7,
        resource: "live/a\"b".into(),
        publishing: true,
        peer: "127.0.0.1:5000".into(),
        transport: "udp",
        notes: vec!["b-frames"],
        figures: arcly_core::engine::LinkFigures {
            rtt_us: 1_500,
            pkt_recv: 40,
            pkt_recv_loss: 3,
            pkt_recv_retrans: 2,
            pkt_recv_drop: 1,
            ..Default::default()
        },
    };
    let other = arcly_core::engine::LinkReport {
        resource: "live/other".into(),
        ..link.clone()
    };
    let links = [link, other];
    let j = stats::streams_json(&engine, &links, &[], Instant::from_millis(3_000), &|_| 2);
    assert!(j.contains("\"stream\":\"a\\\"b\""), "{j}");
    assert!(j.contains("\"uptime_secs\":3"));
    assert!(j.contains("\"subscribers\":0,\"hls_viewers\":2"), "{j}");
    assert!(
        j.contains("\"links\":[{\"protocol\":\"srt\",\"id\":7,\"role\":\"publish\",\"peer\":\"127.0.0.1:5000\",\"rtt_ms\":1.500"),
        "{j}"
    );
    assert!(
        j.contains("\"packets_lost\":3,\"packets_recovered\":2,\"packets_dropped\":1"),
        "{j}"
    );
    assert!(
        j.contains("\"transport\":\"udp\",\"notes\":[\"b-frames\"]}"),
        "{j}"
    );
    // Only the stream's own links.
    assert_eq!(j.matches("\"protocol\":\"srt\"").count(), 1, "{j}");
    let m = stats::metrics(&engine, &links, &|_| 2);
    assert!(m.contains("arcly_streams 1"));
    assert!(
        m.contains("arcly_stream_hls_viewers{app=\"live\",stream=\"a\\\"b\"} 2"),
        "{m}"
    );
    assert!(m.contains("arcly_stream_frames_total{app=\"live\",stream=\"a\\\"b\"} 0"));
    assert!(
        m.contains("arcly_link_rtt_seconds{protocol=\"srt\",app=\"live\",stream=\"a\\\"b\",role=\"publish\",id=\"7\",peer=\"127.0.0.1:5000\"} 0.0015"),
        "{m}"
    );
    assert!(
        m.contains(
            "arcly_link_packets_dropped_total{protocol=\"srt\",app=\"live\",stream=\"other\""
        ),
        "{m}"
    );
}

fn statuses(o: &str) -> Vec<&str> {
    o.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &o[i + 9..i + 12])
        .collect()
}

/// The bytes of one answer to `GET /n` from [`Numbered`].
fn numbered_answer_len() -> usize {
    let h = Arc::new(Numbered);
    let mut s = HttpSession::new(HttpConfig::default(), h);
    s.handle_input(
        Instant::ZERO,
        Input::Stream(BytesMut::from(&b"GET /1000 HTTP/1.1\r\n\r\n"[..])),
    );
    let mut n = 0;
    while let Some(t) = s.poll_transmit() {
        n += t.data.len();
    }
    n
}

/// Answers `GET /N` with the body `N`.
struct Numbered;

impl Handler for Numbered {
    fn poll_response(&self, _now: Instant, req: &Request, _cx: &mut Context<'_>) -> Poll<Response> {
        Poll::Ready(Response::new(200, "text/plain", req.path[1..].to_string()))
    }
}

fn pipelined(n: usize) -> String {
    (0..n)
        .map(|i| format!("GET /{} HTTP/1.1\r\n\r\n", 1000 + i))
        .collect()
}

#[test]
fn pipelined_requests_queue_at_most_the_bound_plus_one_answer() {
    let mut s = HttpSession::new(HttpConfig::default(), Arc::new(Numbered));
    s.handle_input(
        Instant::ZERO,
        Input::Stream(BytesMut::from(pipelined(2000).as_bytes())),
    );
    let queued = s.queued_bytes();
    assert!(
        queued <= DEFAULT_MAX_QUEUED + numbered_answer_len(),
        "{queued} bytes queued"
    );
    assert!(queued >= DEFAULT_MAX_QUEUED, "stopped early at {queued}");
    // The rest waits unparsed, and the host is told to stop reading.
    assert!(s.buffered_input() > 0);
    assert!(!s.wants_input());
    assert_eq!(
        s.poll_timeout(),
        None,
        "no read timer while paused on output"
    );

    // Draining the transmits answers every request, in order.
    let mut o = String::new();
    let mut most = 0;
    while let Some(t) = s.poll_transmit() {
        most = most.max(s.queued_bytes());
        o.push_str(&String::from_utf8_lossy(&t.data));
    }
    assert!(most <= DEFAULT_MAX_QUEUED + numbered_answer_len());
    assert_eq!(statuses(&o).len(), 2000);
    let bodies: Vec<usize> = o
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b[..4].parse().unwrap())
        .collect();
    assert_eq!(bodies, (1000..3000).collect::<Vec<_>>());
    assert!(s.wants_input());
    assert!(s.buffered_input() == 0);
    assert!(!s.is_closed());
    assert!(s.poll_event().is_none());
}

#[test]
fn a_malformed_request_behind_the_pause_still_closes_with_its_event() {
    let mut s = HttpSession::new(HttpConfig::default(), Arc::new(Numbered));
    let mut input = pipelined(2000);
    input.push_str("GET /x HTTP/1.1\r\nBad Header: y\r\n\r\n");
    s.handle_input(
        Instant::ZERO,
        Input::Stream(BytesMut::from(input.as_bytes())),
    );
    assert!(s.poll_event().is_none());
    let mut o = String::new();
    while let Some(t) = s.poll_transmit() {
        o.push_str(&String::from_utf8_lossy(&t.data));
    }
    let st = statuses(&o);
    assert_eq!(st.len(), 2001);
    assert_eq!(st[2000], "400");
    // The close raised inside poll_transmit is signalled through poll_ready
    // and the session is not over until it is taken.
    assert!(!s.is_closed());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(s.poll_ready(Instant::from_millis(1), &mut cx).is_ready());
    assert!(matches!(closed_with(&mut s), ParseError::Malformed(_)));
    assert!(s.is_closed());
}

#[test]
fn a_partial_request_behind_the_pause_is_timed_from_its_next_bytes() {
    let mut s = HttpSession::new(HttpConfig::default(), Arc::new(Numbered));
    let mut input = pipelined(2000);
    input.push_str("GET /9999 HT");
    s.handle_input(
        Instant::ZERO,
        Input::Stream(BytesMut::from(input.as_bytes())),
    );
    assert_eq!(s.poll_timeout(), None);
    let mut n = 0;
    while let Some(t) = s.poll_transmit() {
        n += statuses(&String::from_utf8_lossy(&t.data)).len();
    }
    assert_eq!(n, 2000);
    assert_eq!(s.poll_timeout(), None);
    feed_numbered(&mut s, 20_000, "TP/1.1\r\nX: y");
    assert_eq!(s.poll_timeout(), Some(Instant::from_millis(30_000)));
    feed_numbered(&mut s, 21_000, "\r\n\r\n");
    assert_eq!(s.poll_timeout(), None);
    let o = {
        let mut o = String::new();
        while let Some(t) = s.poll_transmit() {
            o.push_str(&String::from_utf8_lossy(&t.data));
        }
        o
    };
    assert!(o.ends_with("9999"), "{o}");
}

fn feed_numbered(s: &mut HttpSession<Numbered>, t: u64, data: &str) {
    s.handle_input(
        Instant::from_millis(t),
        Input::Stream(BytesMut::from(data.as_bytes())),
    );
}

#[test]
fn a_held_request_stops_reading_once_a_header_section_is_buffered() {
    let (mut s, _) = session();
    feed(&mut s, 0, "GET /held HTTP/1.1\r\n\r\n");
    assert!(s.wants_input());
    feed(&mut s, 1, &"GET /a HTTP/1.1\r\n\r\n".repeat(1000));
    assert!(!s.wants_input());
}

/// Through the kernel's conductor, driven as an adapter drives it: write
/// every transmit, then poll the session; the close found while answering
/// resumed reaches the conductor with its cause.
#[test]
fn the_conductor_sees_a_close_raised_while_draining() {
    use arcly_core::engine::Engine;
    use arcly_core::session::{Conductor, ConnContext};
    let s = HttpSession::new(HttpConfig::default(), Arc::new(Numbered));
    let ctx = ConnContext {
        handshake_timeout: None,
        ..ConnContext::default()
    };
    let mut c = Conductor::new(Engine::default(), s, ctx);
    let mut input = pipelined(2000);
    input.push_str("GET /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n");
    c.handle_input(
        Instant::ZERO,
        Input::Stream(BytesMut::from(input.as_bytes())),
    );
    assert!(!c.wants_input());
    let mut answers = 0;
    let mut cx = Context::from_waker(Waker::noop());
    while !c.is_closed() {
        while let Some(t) = c.poll_transmit() {
            answers += statuses(&String::from_utf8_lossy(&t.data)).len();
        }
        if c.is_closed() {
            break;
        }
        assert!(c.poll_session(&mut cx, Instant::from_millis(1)).is_ready());
    }
    assert_eq!(answers, 2001);
    let e = c.end().and_then(SessionEnd::protocol_error).unwrap();
    assert_eq!(
        e.downcast_ref::<ParseError>(),
        Some(&ParseError::Framing("Content-Length is not a number"))
    );
    let logs: Vec<String> = std::iter::from_fn(|| c.poll_log()).collect();
    assert_eq!(
        logs,
        ["closing http connection from ?: bad framing: Content-Length is not a number"]
    );
}

#[test]
fn ambiguous_framing_gets_400_and_close_after_the_answers_before_it() {
    for bad in [
        "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        "POST /a HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
        "POST /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx",
        "POST /a HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        "GET /a HTTP/1.1\nHost: x\n\n",
        "GET /a HTTP/1.1\r\nX : y\r\n\r\n",
        "GET /a HTTP/1.1\r\nX: y\r\n\tz\r\n\r\n",
        "GET /live%2fa/index.m3u8 HTTP/1.1\r\n\r\n",
        "GET /live/a%5C/index.m3u8 HTTP/1.1\r\n\r\n",
        "GET /live/%00/x HTTP/1.1\r\n\r\n",
        "GET /live/a/../b HTTP/1.1\r\n\r\n",
    ] {
        let (mut s, _) = session();
        feed(
            &mut s,
            0,
            &format!("GET /a HTTP/1.1\r\n\r\n{bad}GET /a HTTP/1.1\r\n\r\n"),
        );
        let o = out(&mut s);
        assert_eq!(statuses(&o), ["200", "400"], "{bad:?}: {o}");
        assert!(
            o.ends_with("\n") && o.contains("Connection: close"),
            "{bad:?}"
        );
        assert!(s.is_closed(), "{bad:?}");
        let e = closed_with(&mut s);
        assert!(
            matches!(
                e,
                ParseError::Framing(_) | ParseError::BadPath(_) | ParseError::Malformed(_)
            ),
            "{bad:?}: {e:?}"
        );
        assert_eq!(e.kind(), ProtocolErrorKind::Malformed);
    }
}

#[test]
fn more_input_than_a_request_may_hold_gets_413_with_a_typed_cause() {
    let cfg = HttpConfig {
        max_header: 100,
        max_body: 100,
        ..HttpConfig::default()
    };
    let mut s = HttpSession::new(cfg, Arc::new(Toy::default()));
    feed(&mut s, 0, &"x".repeat(201));
    assert!(out(&mut s).starts_with("HTTP/1.1 413"));
    let e = closed_with(&mut s);
    assert_eq!(e, ParseError::RequestTooLarge);
    assert_eq!(e.kind(), ProtocolErrorKind::LimitExceeded);
}

/// 300 pipelined requests over the deterministic network simulator: byte
/// pipes with 10 ms of delay, 1 MB/s and segments of 1 to 700 bytes in
/// each direction, on a virtual clock. Every answer arrives, in order, and
/// the answers never queue past the session's bound however the bytes are
/// split; the same seed gives the same arrival times.
#[test]
fn pipelined_requests_over_the_simulator_answer_in_order_at_every_split() {
    use arcly_core::sim::Pipe;
    use std::time::Duration;
    let run = |seed: u64| {
        let mut s = HttpSession::new(HttpConfig::default(), Arc::new(Numbered));
        let mut up = Pipe::new(seed, Duration::from_millis(10), Some(1_000_000), 700);
        let mut down = Pipe::new(seed + 1, Duration::from_millis(10), Some(1_000_000), 700);
        let mut now = Instant::ZERO;
        up.write(now, bytes::Bytes::from(pipelined(300)));
        let mut got = Vec::new();
        let mut arrivals = Vec::new();
        let mut most = 0;
        loop {
            most = most.max(s.queued_bytes());
            while let Some(t) = s.poll_transmit() {
                down.write(now, t.data);
            }
            if let Some(b) = up.read(now) {
                s.handle_input(now, Input::Stream(b));
                continue;
            }
            if let Some(b) = down.read(now) {
                arrivals.push(now.as_micros());
                got.extend_from_slice(&b);
                continue;
            }
            match [up.poll_timeout(), down.poll_timeout(), s.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
            {
                Some(t) => now = now.max(t),
                None => break,
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
        let bodies: Vec<u32> = text
            .split("\r\n\r\n")
            .skip(1)
            .filter_map(|b| b.get(..4).and_then(|n| n.parse().ok()))
            .collect();
        assert_eq!(bodies, (1000..1300).collect::<Vec<u32>>());
        assert!(most <= DEFAULT_MAX_QUEUED + numbered_answer_len(), "{most}");
        assert!(!s.is_closed());
        arrivals
    };
    let a = run(3);
    assert_eq!(a, run(3));
    assert_ne!(a, run(4));
}

/// Real clients' bytes (protocols/http/testdata, recorded by capture.sh
/// against the gateway): curl's keep-alive requests and ffmpeg 5.1's first
/// HLS request parse and are answered in order; the gateway's recorded
/// answers are well-formed responses for our own client's parser.
#[test]
fn captured_client_requests_replay_and_recorded_answers_parse() {
    struct Paths(Mutex<Vec<String>>);
    impl Handler for Paths {
        fn poll_response(&self, _: Instant, req: &Request, _: &mut Context<'_>) -> Poll<Response> {
            self.0.lock().unwrap().push(req.path.clone());
            Poll::Ready(Response::new(200, "text/plain", "ok"))
        }
    }
    let replay = |capture: &[u8]| {
        let h = Arc::new(Paths(Mutex::new(Vec::new())));
        let mut s = HttpSession::new(HttpConfig::default(), h.clone());
        // In pieces of 7 bytes, as a slow socket might hand them over.
        for piece in capture.chunks(7) {
            s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(piece)));
            while s.poll_transmit().is_some() {}
        }
        let mut ends = Vec::new();
        while let Some(e) = s.poll_event() {
            ends.push(e);
        }
        let paths = h.0.lock().unwrap().clone();
        (paths, ends)
    };
    let (paths, ends) = replay(include_bytes!("../testdata/curl_keepalive.c2s"));
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert_eq!(paths[0], "/live/cap/index.m3u8");
    assert_eq!(paths[1], "/live/cap/media.m3u8");
    assert!(
        paths[2].ends_with(".mp4") && paths[3].ends_with(".m4s"),
        "{paths:?}"
    );
    assert!(ends.is_empty(), "{ends:?}");
    let (paths, _) = replay(include_bytes!("../testdata/ffmpeg5_hls.c2s"));
    assert_eq!(paths, vec!["/live/cap/index.m3u8".to_string()]);

    // The gateway's answers: four responses back to back, then the end.
    let mut rest: &[u8] = include_bytes!("../testdata/curl_keepalive.s2c");
    let mut statuses = Vec::new();
    while !rest.is_empty() {
        let (head, n) = crate::client::parse_response_head(rest, false)
            .expect("a well-formed head")
            .expect("a whole head");
        let len = match head.framing {
            crate::client::Framing::Length(n) => n as usize,
            other => panic!("unexpected framing {other:?}"),
        };
        statuses.push(head.status);
        assert!(head.keep_alive);
        rest = &rest[n + len..];
    }
    assert_eq!(statuses, vec![200, 200, 200, 200]);
    let answer: &[u8] = include_bytes!("../testdata/ffmpeg5_hls.s2c");
    let (head, _) = crate::client::parse_response_head(answer, false)
        .expect("a well-formed head")
        .expect("a whole head");
    assert_eq!(head.status, 200);
    assert!(!head.keep_alive, "ffmpeg asked for Connection: close");
}
