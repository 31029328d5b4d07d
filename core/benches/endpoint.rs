//! Routing cost of the endpoint host: one datagram to one of N sessions on
//! one socket (the toy protocol of `arcly_core::sim::toy`), at 10, 1,000 and
//! 10,000 sessions. The cost per datagram must not grow with N.
//!
//! `cargo bench -p arcly-core --features sim --bench endpoint`

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use arcly_core::endpoint::EndpointHost;
use arcly_core::engine::Engine;
use arcly_core::session::ConnContext;
use arcly_core::sim::toy::{msg, ToyEndpoint, HELLO, WELCOME};
use arcly_core::time::Instant;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::net::SocketAddr;

fn host_with(n: u32) -> (EndpointHost<ToyEndpoint>, Vec<(u32, SocketAddr)>) {
    let ctx = ConnContext {
        handshake_timeout: None,
        idle_timeout: core::time::Duration::from_secs(3600),
        ..ConnContext::default()
    };
    let mut host = EndpointHost::new(ToyEndpoint::default(), Engine::default(), ctx);
    let local = SocketAddr::from(([127, 0, 0, 1], 9000));
    let mut peers = Vec::new();
    for i in 0..n {
        let from = SocketAddr::from(([127, 0, (i >> 16) as u8, 1], (i & 0xffff) as u16));
        let hello = msg(0, HELLO, format!("publish s{i}").as_bytes());
        host.handle_datagram(Instant::ZERO, local, from, BytesMut::from(&hello[..]));
        while let Some(t) = host.poll_transmit() {
            if t.data.get(4) == Some(&WELCOME) {
                let id = u32::from_be_bytes([t.data[0], t.data[1], t.data[2], t.data[3]]);
                peers.push((id, from));
            }
        }
    }
    assert_eq!(host.len(), n as usize);
    (host, peers)
}

fn route(c: &mut Criterion) {
    let mut g = c.benchmark_group("endpoint-route");
    g.throughput(Throughput::Elements(1));
    let local = SocketAddr::from(([127, 0, 0, 1], 9000));
    for n in [10u32, 1_000, 10_000] {
        let (mut host, peers) = host_with(n);
        // Datagrams of a kind the toy session ignores: what is measured is
        // the route, the hand-over and the drain, not the bus.
        let dgrams: Vec<(SocketAddr, BytesMut)> = (0..4096usize)
            .map(|i| {
                let (id, from) = peers[(i * 7919) % peers.len()];
                (from, BytesMut::from(&msg(id, 5, b"0123456789abcdef")[..]))
            })
            .collect();
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let (from, d) = &dgrams[i & 4095];
                i += 1;
                host.handle_datagram(Instant::ZERO, local, *from, d.clone());
                while host.poll_transmit().is_some() {}
            })
        });
    }
    g.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
