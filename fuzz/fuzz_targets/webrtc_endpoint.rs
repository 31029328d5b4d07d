//! Arbitrary datagrams at the WebRTC endpoint, with one answered offer
//! (ffmpeg 9's recorded one) waiting: the routing (STUN by username
//! fragment, the rest by address), the hand-over of the waiting session,
//! and str0m's input path for whatever the session is given. Each
//! datagram is a length byte and its bytes, from one of four peers (the
//! length byte's top bits); a datagram that starts with 0xff is replaced
//! by a STUN binding request naming the waiting session.

#![no_main]

use arcly_core::endpoint::{Endpoint, Route, Unrouted};
use arcly_core::engine::Action;
use arcly_core::session::{Input, Session};
use arcly_core::signal::{Offer, Signalling};
use arcly_core::time::Instant;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

const OFFER: &str = include_str!("../../protocols/webrtc/testdata/ffmpeg9_whip_offer.sdp");

fn binding(ufrag: &str) -> Vec<u8> {
    let name = format!("{ufrag}:peer");
    let mut attr = vec![0x00, 0x06];
    attr.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attr.extend_from_slice(name.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[9; 12]);
    m.extend_from_slice(&attr);
    m
}

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "127.0.0.1:8189".parse().unwrap();
    let (mut ep, sig) = arcly_webrtc::webrtc(arcly_webrtc::WebRtcConfig {
        candidates: vec![local],
        ..Default::default()
    });
    let Ok(answer) = sig.offer(
        Instant::ZERO,
        Offer {
            action: Action::Publish,
            app: "live".into(),
            stream: "x".into(),
            token: None,
            user: None,
            password: None,
            sdp: OFFER.into(),
        },
    ) else {
        return;
    };
    let mut session = None;
    let mut i = 0;
    let mut t = 0u64;
    while i < data.len() {
        let head = data[i];
        let n = usize::from(head & 0x3f);
        let from: SocketAddr = format!("127.0.0.{}:5000", 1 + (head >> 6)).parse().unwrap();
        let mut d = data[i + 1..(i + 1 + n).min(data.len())].to_vec();
        i += 1 + n;
        if d.first() == Some(&0xff) {
            d = binding(&answer.id);
        }
        t += 1_000;
        let now = Instant::from_micros(t);
        match ep.route(now, local, from, &d) {
            Route::Session(_) if session.is_some() => {
                let s: &mut arcly_webrtc::PeerSession = session.as_mut().unwrap();
                s.handle_input(now, Input::Datagram { from, local, data: BytesMut::from(&d[..]) });
                s.handle_timeout(now);
                while s.poll_transmit().is_some() {}
                while s.poll_event().is_some() {}
            }
            Route::Drop => {}
            _ => {
                if let Unrouted::Accept { session: mut s, input, .. } =
                    ep.handle_unrouted(now, local, from, BytesMut::from(&d[..]))
                {
                    if let Some(d) = input {
                        s.handle_input(now, Input::Datagram { from, local, data: d });
                    }
                    session = Some(s);
                }
            }
        }
    }
});
