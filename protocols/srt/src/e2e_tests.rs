//! End to end on the simulator: a stream published into one engine is
//! pushed by our caller to the listener's engine over a lossy link, and
//! pulled from there by a second caller into a third engine; the frames
//! that come out equal the frames that went in.

use core::net::SocketAddr;
use core::task::{Context, Waker};
use std::time::Duration;

use arcly_core::bus::Delivery;
use arcly_core::endpoint::EndpointHost;
use arcly_core::engine::{Engine, Request, StreamKey};
use arcly_core::frame::MediaFrame;
use arcly_core::session::{Conductor, ConnContext, Input};
use arcly_core::sim::{LinkConfig, Network};
use arcly_core::time::Instant;
use bytes::BytesMut;

use crate::crypto::KeyLen;
use crate::{CallerConfig, CallerMode, SrtCaller, SrtConfig, SrtEndpoint};

const SERVER: u16 = 8890;

fn at(p: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 9], p))
}

/// The frames of a committed capture of ffmpeg's MPEG-TS (H.264 + AAC).
pub(crate) fn sample() -> (arcly_core::frame::TrackSet, Vec<MediaFrame>) {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../core/testdata/h264_aac.ts"
    ))
    .expect("core/testdata/h264_aac.ts");
    crate::replay_tests::demux(&data)
}

fn caller(mode: CallerMode, sid: &str, pass: Option<&str>, now: Instant, seed: u8) -> SrtCaller {
    SrtCaller::new(
        CallerConfig {
            remote: at(SERVER),
            stream_id: sid.into(),
            passphrase: pass.map(String::from),
            key_len: KeyLen::Aes128,
            latency: Duration::from_millis(120),
            connect_timeout: Duration::from_secs(3),
            mode,
            rendezvous: false,
        },
        now,
        [seed; 32],
    )
    .expect("caller")
}

struct Run {
    got: Vec<MediaFrame>,
    sent: Vec<MediaFrame>,
    refused: Option<String>,
}

/// Pushes the sample through the listener and pulls it back out.
fn run(link: LinkConfig, server_pass: Option<&str>, caller_pass: Option<&str>) -> Run {
    let cfg = SrtConfig {
        passphrase: server_pass.map(String::from),
        ..SrtConfig::default()
    };
    run_with(link, cfg, caller_pass, None)
}

/// [`run`] with the listener's settings, and passphrases per stream put in
/// force while it runs, before the callers come.
fn run_with(
    link: LinkConfig,
    cfg: SrtConfig,
    caller_pass: Option<&str>,
    update: Option<Vec<crate::KeyPassphrase>>,
) -> Run {
    let (tracks, frames) = sample();
    let src = Engine::default();
    let hub = Engine::default();
    let dst = Engine::default();
    let key = |s: &str| StreamKey::new("live", s).expect("key");
    let mut publisher = src
        .publish(&Request::new(key("src"), "test"), Instant::ZERO)
        .expect("publish");
    publisher.set_tracks(tracks);
    let mut host = EndpointHost::new(
        SrtEndpoint::new(cfg, [7; 32]),
        hub.clone(),
        ConnContext::default(),
    );
    if let Some(u) = update {
        host.endpoint().passphrase_updates().set(u);
    }
    let mut net = Network::new(5, link);
    let mut now = Instant::from_millis(1);
    let ctx = ConnContext::default();
    let push = caller(
        CallerMode::Push {
            app: "live".into(),
            stream: "src".into(),
        },
        "publish:live/cam",
        caller_pass,
        now,
        1,
    );
    let mut push = Conductor::new(src.clone(), push, ctx.clone());
    let mut pull: Option<Conductor<SrtCaller>> = None;
    let mut player = None;
    let mut got = Vec::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let first = frames.first().map(|f| f.dts.as_micros()).unwrap_or(0);
    let mut next = 0usize;
    let start = now;
    let end = start + Duration::from_secs(12);
    let (pa, pb) = (at(1), at(2));
    let mut refused = None;
    while now < end {
        // Frames at their own pace.
        while next < frames.len()
            && start.as_micros() + (frames[next].dts.as_micros() - first) as u64 <= now.as_micros()
        {
            let _ = publisher.publish(now, frames[next].clone());
            next += 1;
        }
        if pull.is_none() && now >= start + Duration::from_millis(300) {
            let c = caller(
                CallerMode::Pull {
                    app: "live".into(),
                    stream: "out".into(),
                },
                "read:live/cam",
                caller_pass,
                now,
                2,
            );
            pull = Some(Conductor::new(dst.clone(), c, ctx.clone()));
        }
        if player.is_none() {
            player = dst.play(&Request::new(key("out"), "test")).ok();
        }
        if push.poll_timeout().is_some_and(|t| t <= now) {
            push.handle_timeout(now);
        }
        let _ = push.poll_deliveries(&mut cx, now);
        if let Some(p) = pull.as_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        host.handle_timeout(now);
        let _ = host.poll_deliveries(now);
        while let Some(p) = net.poll_deliver(now) {
            let data = BytesMut::from(&p.data[..]);
            if p.to == at(SERVER) {
                host.handle_datagram(now, at(SERVER), p.from, data);
            } else if p.to == pa {
                push.handle_input(
                    now,
                    Input::Datagram {
                        from: p.from,
                        local: pa,
                        data,
                    },
                );
            } else if let Some(c) = pull.as_mut() {
                c.handle_input(
                    now,
                    Input::Datagram {
                        from: p.from,
                        local: pb,
                        data,
                    },
                );
            }
        }
        let _ = push.poll_deliveries(&mut cx, now);
        while let Some(t) = push.poll_transmit() {
            net.send(now, pa, at(SERVER), t.data);
        }
        if let Some(c) = pull.as_mut() {
            while let Some(t) = c.poll_transmit() {
                net.send(now, pb, at(SERVER), t.data);
            }
            if let Some(e) = c.end() {
                refused.get_or_insert(format!("{e:?}"));
            }
        }
        if let Some(e) = push.end() {
            refused.get_or_insert(format!("{e:?}"));
        }
        while let Some(t) = host.poll_transmit() {
            if let Some(to) = t.to {
                net.send(now, at(SERVER), to, t.data);
            }
        }
        while host.poll_log().is_some() {}
        if let Some(p) = player.as_mut() {
            while let Ok(d) = p.subscription.try_recv() {
                if let Delivery::Frame(f) = d {
                    got.push(f);
                }
            }
        }
        let mut t = now + Duration::from_millis(2);
        for c in [
            push.poll_timeout(),
            pull.as_ref().and_then(|p| p.poll_timeout()),
            host.poll_timeout(),
            net.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(c);
        }
        now = t.max(now + Duration::from_micros(10));
    }
    Run {
        got,
        sent: frames,
        refused,
    }
}

/// The frames from the pull's first key frame on equal the sample's from
/// the same frame.
fn assert_same(r: &Run) {
    assert!(r.refused.is_none(), "{:?}", r.refused);
    let first_key = r
        .got
        .iter()
        .position(|f| f.is_key())
        .expect("a key frame came through");
    let got = &r.got[first_key..];
    let at = r
        .sent
        .iter()
        .position(|f| f.track == got[0].track && f.payload == got[0].payload)
        .expect("the first frame is the sample's");
    let want = &r.sent[at..];
    assert!(
        got.len() + 10 >= want.len(),
        "got {} of {}",
        got.len(),
        want.len()
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.payload, w.payload, "frame payloads");
        assert_eq!(g.track, w.track);
    }
}

#[test]
fn push_then_pull_through_the_listener_is_frame_exact() {
    let r = run(LinkConfig::delay(Duration::from_millis(5)), None, None);
    assert_same(&r);
}

#[test]
fn push_then_pull_under_ten_percent_loss_is_frame_exact() {
    let link = LinkConfig {
        loss: 0.10,
        ..LinkConfig::delay(Duration::from_millis(5))
    };
    let r = run(link, None, None);
    assert_same(&r);
}

#[test]
fn encrypted_push_and_pull_are_frame_exact() {
    let p = "correct horse battery";
    let r = run(
        LinkConfig::delay(Duration::from_millis(5)),
        Some(p),
        Some(p),
    );
    assert_same(&r);
}

#[test]
fn a_wrong_passphrase_is_refused() {
    let r = run(
        LinkConfig::delay(Duration::from_millis(5)),
        Some("correct horse battery"),
        Some("wrong horse battery"),
    );
    let why = r.refused.expect("refused");
    assert!(
        why.contains("BADSECRET") || why.contains("wrong passphrase") || why.contains("Refused"),
        "{why}"
    );
    assert!(r.got.is_empty());
}

/// Passphrases per stream replaced while the listener runs (a
/// configuration reload): callers after it need the new one.
#[test]
fn passphrases_per_stream_replaced_while_running_hold_for_new_callers() {
    let key = |p: &str| crate::KeyPassphrase {
        pattern: "live/*".into(),
        passphrase: p.into(),
    };
    let cfg = || SrtConfig {
        passphrases: vec![key("the old passphrase")],
        ..SrtConfig::default()
    };
    let link = LinkConfig::delay(Duration::from_millis(5));
    let new = Some(vec![key("the new passphrase")]);
    let r = run_with(link.clone(), cfg(), Some("the new passphrase"), new.clone());
    assert_same(&r);
    let r = run_with(link.clone(), cfg(), Some("the old passphrase"), new);
    assert!(
        r.refused.is_some(),
        "the old passphrase still let a caller in"
    );
    assert!(r.got.is_empty());
    // Without the update, the old one holds.
    let r = run_with(link, cfg(), Some("the old passphrase"), None);
    assert_same(&r);
}

#[test]
fn a_missing_passphrase_is_refused() {
    let r = run(
        LinkConfig::delay(Duration::from_millis(5)),
        Some("correct horse battery"),
        None,
    );
    assert!(r.refused.is_some());
    assert!(r.got.is_empty());
}

/// Rendezvous: one caller pushes the sample, the other (each calling the
/// other's address) pulls it into a second engine; `seeds` decide the
/// cookies, so swapping them swaps the Initiator and the Responder.
fn rendezvous(link: LinkConfig, pass: (Option<&str>, Option<&str>), seeds: (u8, u8)) -> Run {
    let (tracks, frames) = sample();
    let src = Engine::default();
    let dst = Engine::default();
    let key = |s: &str| StreamKey::new("live", s).expect("key");
    let mut publisher = src
        .publish(&Request::new(key("src"), "test"), Instant::ZERO)
        .expect("publish");
    publisher.set_tracks(tracks);
    let (pa, pb) = (at(1), at(2));
    let mut net = Network::new(9, link);
    let mut now = Instant::from_millis(1);
    let ctx = ConnContext::default();
    let make = |mode, remote, pass: Option<&str>, seed| {
        SrtCaller::new(
            CallerConfig {
                remote,
                stream_id: String::new(),
                passphrase: pass.map(String::from),
                key_len: KeyLen::Aes192,
                latency: Duration::from_millis(120),
                connect_timeout: Duration::from_secs(3),
                mode,
                rendezvous: true,
            },
            now,
            [seed; 32],
        )
        .expect("caller")
    };
    let push = make(
        CallerMode::Push {
            app: "live".into(),
            stream: "src".into(),
        },
        pb,
        pass.0,
        seeds.0,
    );
    let pull = make(
        CallerMode::Pull {
            app: "live".into(),
            stream: "out".into(),
        },
        pa,
        pass.1,
        seeds.1,
    );
    let mut a = Conductor::new(src.clone(), push, ctx.clone());
    let mut b = Conductor::new(dst.clone(), pull, ctx);
    let mut player = None;
    let mut got = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let first = frames.first().map(|f| f.dts.as_micros()).unwrap_or(0);
    let (mut next, start) = (0usize, now);
    let mut refused = None;
    while now < start + Duration::from_secs(12) {
        while next < frames.len()
            && start.as_micros() + (frames[next].dts.as_micros() - first) as u64 <= now.as_micros()
        {
            let _ = publisher.publish(now, frames[next].clone());
            next += 1;
        }
        if player.is_none() {
            player = dst.play(&Request::new(key("out"), "test")).ok();
        }
        for c in [&mut a, &mut b] {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            let _ = c.poll_deliveries(&mut cx, now);
        }
        while let Some(p) = net.poll_deliver(now) {
            let c = if p.to == pa { &mut a } else { &mut b };
            c.handle_input(
                now,
                Input::Datagram {
                    from: p.from,
                    local: p.to,
                    data: BytesMut::from(&p.data[..]),
                },
            );
        }
        for (c, from, to) in [(&mut a, pa, pb), (&mut b, pb, pa)] {
            let _ = c.poll_deliveries(&mut cx, now);
            while let Some(t) = c.poll_transmit() {
                net.send(now, from, to, t.data);
            }
            if let Some(e) = c.end() {
                refused.get_or_insert(format!("{e:?}"));
            }
        }
        if let Some(p) = player.as_mut() {
            while let Ok(d) = p.subscription.try_recv() {
                if let Delivery::Frame(f) = d {
                    got.push(f);
                }
            }
        }
        let mut t = now + Duration::from_millis(2);
        for c in [a.poll_timeout(), b.poll_timeout(), net.poll_timeout()]
            .into_iter()
            .flatten()
        {
            t = t.min(c);
        }
        now = t.max(now + Duration::from_micros(10));
    }
    Run {
        got,
        sent: frames,
        refused,
    }
}

#[test]
fn rendezvous_is_frame_exact_whichever_side_initiates() {
    for seeds in [(1, 2), (2, 1), (5, 9), (9, 5)] {
        let r = rendezvous(
            LinkConfig::delay(Duration::from_millis(5)),
            (None, None),
            seeds,
        );
        assert_same(&r);
    }
}

#[test]
fn rendezvous_under_ten_percent_loss_is_frame_exact() {
    let link = LinkConfig {
        loss: 0.10,
        ..LinkConfig::delay(Duration::from_millis(5))
    };
    for seeds in [(3, 4), (4, 3)] {
        assert_same(&rendezvous(link.clone(), (None, None), seeds));
    }
}

#[test]
fn encrypted_rendezvous_is_frame_exact_and_a_wrong_passphrase_is_refused() {
    let p = Some("correct horse battery");
    for seeds in [(1, 2), (2, 1)] {
        let r = rendezvous(LinkConfig::delay(Duration::from_millis(5)), (p, p), seeds);
        assert_same(&r);
        let r = rendezvous(
            LinkConfig::delay(Duration::from_millis(5)),
            (p, Some("wrong horse battery")),
            seeds,
        );
        assert!(r.refused.is_some(), "a wrong passphrase connected");
        assert!(r.got.is_empty());
    }
}
