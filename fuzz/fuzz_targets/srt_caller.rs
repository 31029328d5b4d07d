//! Arbitrary datagrams from the "listener" (or the rendezvous peer) into
//! our SRT caller, with time passing between them: no panic, and the
//! caller's output stays bounded. Input: the first byte chooses rendezvous,
//! a passphrase and push or pull; then datagrams as [len: u8][bytes], each
//! followed by a time step of (first byte % 64) ms.

#![no_main]

use std::net::SocketAddr;
use std::task::{Context, Waker};
use std::time::Duration;

use arcly_core::engine::Engine;
use arcly_core::session::{Conductor, ConnContext, Input};
use arcly_core::time::Instant;
use arcly_srt::crypto::KeyLen;
use arcly_srt::{CallerConfig, CallerMode, SrtCaller};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let remote: SocketAddr = "127.0.0.1:8890".parse().expect("addr");
    let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let (app, stream) = ("live".to_string(), "x".to_string());
    let cfg = CallerConfig {
        remote,
        stream_id: "publish:live/x".into(),
        passphrase: (mode & 2 != 0).then(|| "0123456789abcdef".to_string()),
        key_len: KeyLen::Aes128,
        latency: Duration::from_millis(120),
        connect_timeout: Duration::from_secs(3),
        mode: if mode & 4 != 0 {
            CallerMode::Push { app, stream }
        } else {
            CallerMode::Pull { app, stream }
        },
        rendezvous: mode & 1 != 0,
    };
    let mut now = Instant::from_millis(1);
    let Ok(caller) = SrtCaller::new(cfg, now, [mode; 32]) else {
        return;
    };
    let mut c = Conductor::new(Engine::default(), caller, ConnContext::default());
    let mut cx = Context::from_waker(Waker::noop());
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (d, tail) = tail.split_at(n);
        rest = tail;
        c.handle_input(
            now,
            Input::Datagram {
                from: remote,
                local,
                data: BytesMut::from(d),
            },
        );
        let _ = c.poll_deliveries(&mut cx, now);
        let mut sent = 0;
        while c.poll_transmit().is_some() {
            sent += 1;
            assert!(sent < 10_000, "unbounded output");
        }
        now = now + Duration::from_millis(u64::from(d.first().copied().unwrap_or(0) % 64));
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
    }
});
