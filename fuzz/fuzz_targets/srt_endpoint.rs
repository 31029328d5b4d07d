//! Arbitrary datagrams into the SRT listener: first stateless (inductions,
//! conclusions with bad cookies, strays), then into a session that a valid
//! handshake opened (publishing), with time passing between datagrams.
//! Input: datagrams as [len: u8][bytes], the first byte choosing whether
//! each is aimed at the session's socket id.

#![no_main]

use std::net::SocketAddr;

use arcly_core::endpoint::EndpointHost;
use arcly_core::engine::Engine;
use arcly_core::session::ConnContext;
use arcly_core::time::Instant;
use arcly_srt::handshake::{ext_flag, Extension, Handshake, HsType, SrtOptions};
use arcly_srt::packet::{Control, ControlPacket, Packet};
use arcly_srt::seq::Seq;
use arcly_srt::{SrtConfig, SrtEndpoint};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fn hs(kind: HsType, version: u32, cookie: u32, exts: Vec<Extension>) -> BytesMut {
    let p = ControlPacket {
        timestamp: 0,
        dest: 0,
        control: Control::Handshake(Handshake {
            version,
            encryption: 0,
            extension: if exts.is_empty() {
                2
            } else {
                ext_flag::HSREQ | ext_flag::CONFIG
            },
            initial_seq: Seq::new(77),
            mtu: 1500,
            flow_window: 8192,
            hs_type: kind,
            socket_id: 42,
            cookie,
            peer_ip: [0; 16],
            extensions: exts,
        }),
    };
    BytesMut::from(&p.to_bytes()[..])
}

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "127.0.0.1:8890".parse().expect("addr");
    let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut host = EndpointHost::new(
        SrtEndpoint::new(SrtConfig::default(), [1; 32]),
        Engine::default(),
        ConnContext::default(),
    );
    let mut now = Instant::from_millis(1);
    host.handle_datagram(now, local, peer, hs(HsType::Induction, 4, 0, vec![]));
    let mut cookie = 0;
    while let Some(t) = host.poll_transmit() {
        if let Ok(Packet::Control(ControlPacket {
            control: Control::Handshake(h),
            ..
        })) = Packet::parse(t.data)
        {
            cookie = h.cookie;
        }
    }
    let exts = vec![
        Extension::HsReq(SrtOptions {
            version: 0x010500,
            flags: 0x3F,
            recv_delay: 120,
            send_delay: 120,
        }),
        Extension::StreamId("publish:live/fuzz".into()),
    ];
    host.handle_datagram(now, local, peer, hs(HsType::Conclusion, 5, cookie, exts));
    let mut id = 0;
    while let Some(t) = host.poll_transmit() {
        if let Ok(Packet::Control(ControlPacket {
            control: Control::Handshake(h),
            ..
        })) = Packet::parse(t.data)
        {
            id = h.socket_id;
        }
    }
    let aim = data.first().copied().unwrap_or(0);
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut n = 0u32;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let mut d = BytesMut::from(&tail[..len]);
        rest = &tail[len..];
        if aim & (1 << (n % 8)) != 0 && d.len() >= 16 {
            d[12..16].copy_from_slice(&id.to_be_bytes());
        }
        n += 1;
        now = now + std::time::Duration::from_millis((len % 16) as u64);
        host.handle_datagram(now, local, peer, d);
        host.handle_timeout(now);
        while host.poll_transmit().is_some() {}
        while host.poll_log().is_some() {}
    }
    now = now + std::time::Duration::from_secs(10);
    host.handle_timeout(now);
    while host.poll_transmit().is_some() {}
});
