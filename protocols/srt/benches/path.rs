//! Packets per second through an SRT connection's send path (payload in,
//! datagram out) and receive path (datagram in, ACKs and TSBPD delivery,
//! payload out), clear and AES-128-CTR encrypted.

// criterion_group! makes an undocumented function.
#![allow(missing_docs)]

use std::time::Duration;

use arcly_core::time::Instant;
use arcly_srt::conn::{ConnConfig, Connection};
use arcly_srt::crypto::{Crypto, KeyLen};
use arcly_srt::seq::Seq;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const N: u64 = 10_000;

fn pair(encrypted: bool) -> (Connection, Connection) {
    let cfg = |a, b| ConnConfig::new(a, b, Seq::new(1), Seq::new(1), Duration::from_millis(120));
    let crypto = || {
        encrypted.then(|| {
            let mut n = 0u8;
            let mut fill = |b: &mut [u8]| {
                for x in b {
                    n = n.wrapping_add(37);
                    *x = n;
                }
            };
            Crypto::generate(KeyLen::Aes128, &mut fill)
        })
    };
    let mut tx_cfg = cfg(1, 2);
    // Pacing off for the benchmark: the send path, not the clock.
    tx_cfg.min_pace = u64::MAX / 4;
    let tx = Connection::new(tx_cfg, Instant::ZERO, crypto());
    let rx = Connection::new(cfg(2, 1), Instant::ZERO, crypto());
    (tx, rx)
}

/// The datagrams the sender makes for N payloads, 100 µs apart.
fn datagrams(encrypted: bool) -> Vec<Bytes> {
    let (mut tx, _) = pair(encrypted);
    let payload = Bytes::from(vec![0x47u8; 1316]);
    let mut out = Vec::new();
    for i in 0..N {
        tx.send(Instant::from_micros(i * 100), payload.clone());
        while let Some(d) = tx.poll_datagram() {
            out.push(d);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("srt");
    g.throughput(Throughput::Elements(N));
    for enc in [false, true] {
        let name = if enc { "aes128" } else { "clear" };
        let payload = Bytes::from(vec![0x47u8; 1316]);
        g.bench_function(format!("send_{name}"), |b| {
            b.iter_batched(
                || pair(enc).0,
                |mut tx| {
                    for i in 0..N {
                        tx.send(Instant::from_micros(i * 100), payload.clone());
                        while tx.poll_datagram().is_some() {}
                    }
                    tx
                },
                BatchSize::LargeInput,
            )
        });
        let dgrams = datagrams(enc);
        g.bench_function(format!("receive_{name}"), |b| {
            b.iter_batched(
                || pair(enc).1,
                |mut rx| {
                    for (i, d) in dgrams.iter().enumerate() {
                        let now = Instant::from_micros(i as u64 * 100);
                        rx.handle_datagram(now, BytesMut::from(&d[..]));
                        if i % 100 == 0 {
                            rx.handle_timeout(now);
                        }
                        while rx.poll_payload().is_some() {}
                        while rx.poll_datagram().is_some() {}
                    }
                    rx.handle_timeout(Instant::from_micros(N * 100 + 1_000_000));
                    rx
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
