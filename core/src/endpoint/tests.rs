//! The endpoint host with the toy datagram protocol
//! ([`crate::sim::toy`]), over the network simulator.

use super::*;
use crate::sim::toy::{msg, ToyEndpoint};
use crate::sim::{LinkConfig, Network};
use core::time::Duration;

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

const SERVER: u16 = 9000;

fn pump(host: &mut EndpointHost<ToyEndpoint>, net: &mut Network, now: Instant) {
    host.poll_deliveries(now);
    while let Some(t) = host.poll_transmit() {
        let to = t.to.expect("datagrams have a destination");
        net.send(now, t.from.unwrap_or(addr(SERVER)), to, t.data);
    }
}

#[test]
fn publish_and_play_through_an_endpoint_over_the_simulator() {
    let engine = Engine::default();
    let mut host = EndpointHost::new(ToyEndpoint::default(), engine, ConnContext::default());
    let mut net = Network::new(1, LinkConfig::delay(Duration::from_millis(5)));
    let (publisher, player, pinger) = (addr(1), addr(2), addr(3));
    let mut now = Instant::ZERO;
    net.send(now, publisher, addr(SERVER), msg(0, 0, b"publish cam"));
    net.send(now, pinger, addr(SERVER), msg(0, 9, b""));
    let mut ids: HashMap<SocketAddr, u32> = HashMap::new();
    let mut played = Vec::new();
    let mut pongs = 0;
    for step in 0..400u32 {
        now = now + Duration::from_millis(1);
        while let Some(p) = net.poll_deliver(now) {
            if p.to == addr(SERVER) {
                host.handle_datagram(now, p.to, p.from, BytesMut::from(&p.data[..]));
            } else {
                match p.data[4] {
                    2 => {
                        let id = u32::from_be_bytes([p.data[0], p.data[1], p.data[2], p.data[3]]);
                        ids.insert(p.to, id);
                        if p.to == publisher {
                            net.send(now, player, addr(SERVER), msg(0, 0, b"play cam"));
                        }
                    }
                    1 if p.to == player => {
                        played.push(i64::from_be_bytes(p.data[5..13].try_into().unwrap()))
                    }
                    9 => pongs += 1,
                    _ => {}
                }
            }
        }
        if step % 10 == 0 && ids.contains_key(&player) {
            let id = ids[&publisher];
            net.send(
                now,
                publisher,
                addr(SERVER),
                msg(id, 1, &i64::from(step).to_be_bytes()),
            );
        }
        pump(&mut host, &mut net, now);
    }
    assert_eq!(pongs, 1, "the endpoint answers a ping itself");
    assert_eq!(host.len(), 2);
    let sent: Vec<i64> = (0..400)
        .filter(|s| s % 10 == 0)
        .map(i64::from)
        .filter(|s| played.first().is_some_and(|f| s >= f))
        .collect();
    assert!(played.len() > 30, "{played:?}");
    // Everything sent after the player joined, in order, except what was
    // still in flight at the end.
    assert_eq!(played[..], sent[..played.len()]);
    assert!(sent.len() - played.len() <= 2);
    let st = host.stats();
    assert_eq!(st.accepted, 2);
    assert_eq!(st.unrouted, 3);

    // The sessions as an API shows them: peer, stream, role, bytes.
    let listed: Vec<_> = host
        .sessions()
        .map(|s| {
            (
                s.peer,
                s.stream.map(|(k, a)| (k.to_string(), a)),
                s.bytes_in,
                s.bytes_out,
            )
        })
        .collect();
    let of = |peer| {
        listed
            .iter()
            .find(|s| s.0 == peer)
            .cloned()
            .expect("listed")
    };
    let (_, stream, bytes_in, _) = of(publisher);
    assert_eq!(
        stream,
        Some(("live/cam".to_string(), crate::engine::Action::Publish))
    );
    assert!(bytes_in > 35 * 13, "{bytes_in}");
    let (_, stream, _, bytes_out) = of(player);
    assert_eq!(
        stream,
        Some(("live/cam".to_string(), crate::engine::Action::Play))
    );
    assert!(bytes_out > 30 * 13, "{bytes_out}");
    // Ending one: it goes once its goodbye is out; the other stays.
    let key = host
        .sessions()
        .find(|s| s.peer == player)
        .map(|s| *s.key)
        .expect("the player");
    assert!(host.end_session(now, &key, crate::bus::CloseReason::Ended));
    pump(&mut host, &mut net, now);
    assert_eq!(host.len(), 1);
    assert!(host.sessions().all(|s| s.peer == publisher));
    assert!(!host.end_session(now, &key, crate::bus::CloseReason::Ended));
}

#[test]
fn routing_and_timers_do_not_scan_the_sessions() {
    // 10,000 sessions: routing a datagram is one look-up; the timer heap
    // holds one live entry per session with a deadline.
    let engine = Engine::default();
    let ctx = ConnContext {
        handshake_timeout: Some(Duration::from_secs(10)),
        ..ConnContext::default()
    };
    let mut host = EndpointHost::new(ToyEndpoint::default(), engine, ctx);
    let now = Instant::ZERO;
    for i in 0..10_000u32 {
        let from = SocketAddr::from(([127, 0, 0, 1], 10_000 + (i % 50_000) as u16));
        host.handle_datagram(
            now,
            addr(SERVER),
            from,
            BytesMut::from(&msg(0, 0, format!("play s{i}").as_bytes())[..]),
        );
        while host.poll_transmit().is_some() {}
    }
    // Every play was refused (nothing published): each session closed.
    assert_eq!(host.stats().accepted, 10_000);
    assert_eq!(host.len(), 0);
    assert_eq!(host.stats().closed, 10_000);
    // Unknown ids go to the endpoint, which ignores a non-hello.
    host.handle_datagram(
        now,
        addr(SERVER),
        addr(1),
        BytesMut::from(&msg(77, 1, b"x")[..]),
    );
    assert_eq!(host.stats().unrouted, 10_001);
    host.handle_datagram(now, addr(SERVER), addr(1), BytesMut::from(&b"ab"[..]));
    assert_eq!(host.stats().dropped, 1);
    assert_eq!(host.poll_timeout(), None);
}
