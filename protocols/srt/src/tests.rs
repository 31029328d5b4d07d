//! Deterministic tests on the network simulator: a connection pair under
//! seeded loss, reordering, duplication and delay delivers every payload
//! exactly, in order, or counts it as dropped; never corrupts one.

use core::net::SocketAddr;
use std::time::Duration;

use arcly_core::sim::{LinkConfig, Network};
use arcly_core::time::Instant;
use bytes::{Bytes, BytesMut};

use crate::conn::{ConnConfig, Connection, Stats};
use crate::seq::Seq;

pub(crate) fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], p))
}

/// A payload that says its own index, with a checksum-like body.
fn payload(i: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(1316);
    b.extend_from_slice(&i.to_be_bytes());
    for k in 0..1312u32 {
        b.extend_from_slice(&[(i.wrapping_mul(31).wrapping_add(k) & 0xFF) as u8]);
    }
    b.freeze()
}

pub(crate) struct PairRun {
    pub delivered: Vec<u32>,
    pub corrupt: usize,
    pub sender: Stats,
    pub receiver: Stats,
    pub sent: u32,
    /// The sender's buffer at the end (bounded by the latency).
    pub max_send_buffer: usize,
    /// Times a connection's timer was still due right after it ran (a
    /// host driving it would spin).
    pub spins: u32,
}

/// Sends `n` payloads, one every `gap`, from A to B over `link` (both
/// directions), at `latency`; then runs 3 s more.
pub(crate) fn run_pair(
    seed: u64,
    link: LinkConfig,
    n: u32,
    gap: Duration,
    latency: Duration,
    isn: u32,
    start: Instant,
) -> PairRun {
    run_pair_from(seed, link, n, gap, latency, isn, start, start)
}

/// [`run_pair`] with the sender's time stamps counted from `origin`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_pair_from(
    seed: u64,
    link: LinkConfig,
    n: u32,
    gap: Duration,
    latency: Duration,
    isn: u32,
    start: Instant,
    origin: Instant,
) -> PairRun {
    let (a, b) = (addr(1), addr(2));
    let mut net = Network::new(seed, link);
    let mut tx = Connection::new(
        ConnConfig::new(11, 22, Seq::new(isn), Seq::new(isn), latency),
        start,
        None,
    );
    let mut rx = Connection::new(
        ConnConfig::new(22, 11, Seq::new(isn), Seq::new(isn), latency),
        start,
        None,
    );
    tx.set_time_origin(origin);
    let mut now = start;
    let mut next_send = start;
    let mut i = 0u32;
    let end = start + gap * n + Duration::from_secs(3);
    let mut delivered = Vec::new();
    let mut corrupt = 0;
    let mut max_send_buffer = 0;
    let mut spins = 0;
    while now < end {
        if i < n && now >= next_send {
            tx.send(now, payload(i));
            i += 1;
            next_send = next_send + gap;
        }
        for c in [&mut tx, &mut rx] {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    spins += 1;
                }
            }
        }
        while let Some(p) = net.poll_deliver(now) {
            let data = BytesMut::from(&p.data[..]);
            if p.to == b {
                rx.handle_datagram(now, data);
            } else {
                tx.handle_datagram(now, data);
            }
        }
        while let Some(d) = tx.poll_datagram() {
            net.send(now, a, b, d);
        }
        while let Some(d) = rx.poll_datagram() {
            net.send(now, b, a, d);
        }
        while let Some(p) = rx.poll_payload() {
            let idx = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
            if p != payload(idx) {
                corrupt += 1;
            }
            delivered.push(idx);
        }
        max_send_buffer = max_send_buffer.max(tx.send_buffered());
        let mut t = end;
        for c in [tx.poll_timeout(), rx.poll_timeout(), net.poll_timeout()]
            .into_iter()
            .flatten()
        {
            t = t.min(c);
        }
        if i < n {
            t = t.min(next_send);
        }
        now = t.max(now + Duration::from_micros(1)).min(end);
    }
    PairRun {
        delivered,
        corrupt,
        sender: tx.stats(),
        receiver: rx.stats(),
        sent: i,
        max_send_buffer,
        spins,
    }
}

fn lossy(loss: f64, delay_ms: u64) -> LinkConfig {
    LinkConfig {
        loss,
        ..LinkConfig::delay(Duration::from_millis(delay_ms))
    }
}

fn check(r: &PairRun) {
    assert_eq!(r.corrupt, 0, "corrupted payloads");
    assert_eq!(r.spins, 0, "a timer stayed due after it ran");
    assert!(
        r.delivered.windows(2).all(|w| w[0] < w[1]),
        "delivered out of order or twice"
    );
    let accounted = r.delivered.len() as u64 + r.receiver.pkt_recv_drop;
    let missing: Vec<u32> = (0..r.sent)
        .filter(|i| r.delivered.binary_search(i).is_err())
        .collect();
    // A payload the receiver never heard of (the stream's last ones, lost
    // with the sender's drop request) is counted by the sender.
    let unheard_tail = missing.iter().filter(|&&i| i + 20 >= r.sent).count() as u64;
    assert!(
        accounted <= u64::from(r.sent)
            && (accounted == u64::from(r.sent)
                || (accounted + unheard_tail >= u64::from(r.sent) && r.sender.pkt_send_drop > 0)),
        "every payload is delivered or counted as dropped: missing {missing:?}, {:?} {:?}",
        r.receiver,
        r.sender
    );
}

#[test]
fn clean_link_delivers_everything_in_order() {
    let r = run_pair(
        1,
        lossy(0.0, 5),
        500,
        Duration::from_millis(10),
        Duration::from_millis(120),
        1000,
        Instant::from_millis(1000),
    );
    check(&r);
    assert_eq!(r.delivered.len(), 500);
    assert_eq!(r.sender.pkt_retrans, 0);
    assert!(
        r.receiver.rtt > 5_000 && r.receiver.rtt < 20_000,
        "rtt {}",
        r.receiver.rtt
    );
}

#[test]
fn ten_percent_loss_is_recovered_at_120ms() {
    for seed in 1..=5 {
        let r = run_pair(
            seed,
            lossy(0.10, 10),
            1000,
            Duration::from_millis(10),
            Duration::from_millis(120),
            7,
            Instant::from_millis(500),
        );
        check(&r);
        assert_eq!(r.receiver.pkt_recv_drop, 0, "seed {seed}: {:?}", r.receiver);
        assert!(r.sender.pkt_retrans > 50, "seed {seed}: {:?}", r.sender);
        assert!(r.receiver.pkt_recv_loss > 50);
    }
}

#[test]
fn reorder_duplicates_and_jitter_are_absorbed() {
    let link = LinkConfig {
        loss: 0.05,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        duplicate: 0.05,
        jitter: Duration::from_millis(20),
        ..LinkConfig::delay(Duration::from_millis(10))
    };
    for seed in 10..13 {
        let r = run_pair(
            seed,
            link.clone(),
            1000,
            Duration::from_millis(10),
            Duration::from_millis(200),
            99,
            Instant::from_millis(10),
        );
        check(&r);
        assert_eq!(r.receiver.pkt_recv_drop, 0, "seed {seed}: {:?}", r.receiver);
        assert!(
            r.receiver.pkt_recv_belated > 0,
            "duplicates are seen and ignored"
        );
    }
}

#[test]
fn heavy_loss_drops_are_counted_never_corrupt() {
    for (seed, loss) in [(21, 0.2), (22, 0.3)] {
        let r = run_pair(
            seed,
            lossy(loss, 20),
            800,
            Duration::from_millis(10),
            Duration::from_millis(120),
            5,
            Instant::from_millis(1),
        );
        check(&r);
        // Some packets are lost beyond what 120 ms allows to recover.
        assert!(r.delivered.len() > 700, "{loss}: {}", r.delivered.len());
        // The sender's buffer is bounded by the latency, not the stream.
        assert!(r.max_send_buffer < 100, "{}", r.max_send_buffer);
    }
}

#[test]
fn sequence_numbers_wrap() {
    let r = run_pair(
        3,
        lossy(0.05, 5),
        600,
        Duration::from_millis(10),
        Duration::from_millis(120),
        crate::seq::MAX_SEQ - 300,
        Instant::from_millis(2),
    );
    check(&r);
    assert_eq!(r.delivered.len(), 600);
}

#[test]
fn timestamps_wrap_past_32_bits() {
    // The sender's clock starts 10 s before its 32-bit microsecond time
    // stamps wrap (at 71.6 minutes).
    let start = Instant::from_micros(1u64 << 33);
    let origin = Instant::from_micros((1u64 << 33) - ((1u64 << 32) - 10_000_000));
    let r = run_pair_from(
        4,
        lossy(0.05, 5),
        2000,
        Duration::from_millis(10),
        Duration::from_millis(120),
        1,
        start,
        origin,
    );
    check(&r);
    assert_eq!(r.delivered.len(), 2000);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Whatever the loss, order and duplication, every payload is delivered
    /// exactly and in order, or counted as dropped.
    #[test]
    fn any_loss_gives_exact_payloads_or_counted_drops(
        seed in 0u64..10_000,
        loss in 0.0f64..0.3,
        reorder in 0.0f64..0.2,
        dup in 0.0f64..0.1,
        delay in 0u64..40,
        isn in 0u32..=crate::seq::MAX_SEQ,
    ) {
        let link = LinkConfig {
            loss,
            reorder,
            reorder_delay: Duration::from_millis(12),
            duplicate: dup,
            ..LinkConfig::delay(Duration::from_millis(delay))
        };
        let r = run_pair(seed, link, 300, Duration::from_millis(10), Duration::from_millis(120), isn, Instant::from_millis(3));
        check(&r);
    }
}

/// A stream id that is not UTF-8 is refused at parsing (it used to parse
/// lossily and grow past 512 bytes when written back; found by fuzzing).
#[test]
fn a_stream_id_that_is_not_utf8_is_refused() {
    use crate::handshake::{Extension, Handshake, HsType};
    use crate::packet::{Control, ControlPacket, Packet};
    let hs = Handshake {
        version: 5,
        encryption: 0,
        extension: 4,
        initial_seq: crate::seq::Seq::new(1),
        mtu: 1500,
        flow_window: 8192,
        hs_type: HsType::Conclusion,
        socket_id: 7,
        cookie: 9,
        peer_ip: [0; 16],
        extensions: vec![Extension::StreamId("abcd".into())],
    };
    let b = ControlPacket {
        timestamp: 0,
        dest: 0,
        control: Control::Handshake(hs),
    }
    .to_bytes();
    assert!(Packet::parse(b.clone()).is_ok());
    // The stream id's first byte (the words are byte-swapped on the wire).
    let at = b.windows(4).position(|w| w == b"dcba").expect("stream id");
    let mut bad = b.to_vec();
    bad[at] = 0xFF;
    assert!(Packet::parse(bytes::Bytes::from(bad)).is_err());
}

/// A NAK whose range wraps the sequence space (one end ahead of what was
/// sent, the other behind it) names no packet: it used to put a billion
/// numbers in the loss list, which the sender then walked one by one (20 s
/// of CPU per datagram; found by fuzzing the endpoint).
#[test]
fn a_nak_that_wraps_the_sequence_space_names_nothing() {
    use crate::packet::{Control, ControlPacket};
    let cfg = ConnConfig::new(
        1,
        2,
        Seq::new(100),
        Seq::new(100),
        Duration::from_millis(120),
    );
    let mut c = Connection::new(cfg, Instant::ZERO, None);
    let mut sent = 0;
    for i in 0..5u64 {
        c.send(Instant::from_micros(i * 10_000), payload(i as u32));
        c.handle_timeout(Instant::from_micros(i * 10_000));
        while c.poll_datagram().is_some() {
            sent += 1;
        }
    }
    assert!(sent >= 5, "{sent}");
    let nak = ControlPacket {
        timestamp: 0,
        dest: 1,
        control: Control::Nak(vec![(Seq::new(100 + (1 << 30) - 5), Seq::new(90))]),
    }
    .to_bytes();
    let started = std::time::Instant::now();
    let now = Instant::from_micros(60_000);
    c.handle_datagram(now, BytesMut::from(&nak[..]));
    c.handle_timeout(now);
    let mut out = 0;
    while c.poll_datagram().is_some() {
        out += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // What goes out is at most the five packets sent (resent because no
    // ACK came), not a walk over the sequence space.
    assert!(c.stats().pkt_send_loss <= 5, "{:?}", c.stats());
    assert!(c.stats().pkt_retrans <= 5, "{:?}", c.stats());
    assert!(out <= 10, "{out} datagrams");
}
