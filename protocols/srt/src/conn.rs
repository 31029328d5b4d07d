//! An established SRT connection in live mode, sans-IO: the sender with
//! its retransmission buffer and pacing, the receiver with its loss list,
//! ACKs, NAKs and TSBPD delivery, and the keepalive and idle timers.
//!
//! Time is an input ([`Instant`], microseconds); nothing here reads a clock.
//! Payloads go in with [`Connection::send`] and come out, in order and at
//! their delivery time, from [`Connection::poll_payload`]; datagrams to send
//! come from [`Connection::poll_datagram`]; [`Connection::poll_timeout`] says
//! when to call [`Connection::handle_timeout`].

use std::collections::VecDeque;
use std::time::Duration;

use arcly_core::time::{Instant, Wrap32};
use bytes::{Bytes, BytesMut};

use crate::crypto::{Crypto, KeyIndex};
use crate::packet::{
    AckInfo, Control, ControlPacket, DataPacket, KeyFlag, Packet, Position, HEADER_LEN,
};
use crate::seq::{next_msg, LossList, Seq};

/// The RTT every side assumes before it has measured one, µs (its
/// variance: half of it).
const INITIAL_RTT: u32 = 100_000;
/// A closing sender waits this long past the peer's latency after the last
/// acknowledgement, for the peer's TSBPD to play it out (its clock may run
/// a little behind ours), µs.
const LINGER_MARGIN: u64 = 250_000;
/// A sender keeps an unacknowledged packet at least this long, µs.
const SEND_DROP_MIN: u64 = 1_000_000;
/// The ACK timer (the SYN interval).
const SYN: u64 = 10_000;
/// The start of a connection, when a libsrt receiver has not yet sent a
/// periodic NAK (its first comes 150 ms in), µs.
const STARTUP: u64 = 200_000;
/// Packets sent again at most at once in a connection's start.
const GO_BACK_MAX: usize = 128;
/// A light ACK every this many packets between full ones.
const LIGHT_ACK_EVERY: u32 = 64;
/// The shortest periodic NAK interval.
const MIN_NAK_INTERVAL: u64 = 20_000;
/// ACKs remembered for their ACKACKs.
const ACK_HISTORY: usize = 64;
/// Loss ranges in one NAK at most (it must fit one datagram).
const MAX_NAK_RANGES: usize = 160;
/// Drift samples per correction.
const DRIFT_SAMPLES: u32 = 1_000;
/// Drift below this is left alone, µs.
const DRIFT_TOLERANCE: i64 = 2_500;

/// Settings of one connection (after the handshake agreed on them).
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// Our socket id.
    pub local_id: u32,
    /// The peer's socket id.
    pub peer_id: u32,
    /// The first sequence number we send.
    pub send_isn: Seq,
    /// The first sequence number we receive.
    pub recv_isn: Seq,
    /// The receiver's latency (TSBPD delay) for what we receive.
    pub recv_latency: Duration,
    /// The latency the peer applies to what we send (for the sender's drop).
    pub send_latency: Duration,
    /// The peer's flow window, packets.
    pub peer_window: u32,
    /// Our receive buffer, packets.
    pub recv_window: u32,
    /// A keepalive after this much silence on our side.
    pub keepalive: Duration,
    /// The connection breaks after this much silence from the peer.
    pub idle_timeout: Duration,
    /// Packets are paced at the input rate plus this much, percent.
    pub overhead_pct: u32,
    /// Pacing never goes below this rate, bytes per second, so that a key
    /// frame's burst is not spread past the latency before the input rate
    /// is known.
    pub min_pace: u64,
    /// Drop too-late packets (TLPKTDROP) at the receiver and the sender.
    pub too_late_drop: bool,
}

impl ConnConfig {
    /// Settings with the defaults for everything but the ids and numbers.
    pub fn new(
        local_id: u32,
        peer_id: u32,
        send_isn: Seq,
        recv_isn: Seq,
        latency: Duration,
    ) -> Self {
        ConnConfig {
            local_id,
            peer_id,
            send_isn,
            recv_isn,
            recv_latency: latency,
            send_latency: latency,
            peer_window: 8192,
            recv_window: 8192,
            keepalive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            overhead_pct: 25,
            min_pace: 5_000_000,
            too_late_drop: true,
        }
    }
}

/// What a connection counted, after libsrt's `srt_bstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Data packets sent (first transmissions).
    pub pkt_sent: u64,
    /// Data packets received (unique).
    pub pkt_recv: u64,
    /// Packets found missing at the receiver.
    pub pkt_recv_loss: u64,
    /// Packets the peer reported lost (NAKed).
    pub pkt_send_loss: u64,
    /// Retransmissions sent.
    pub pkt_retrans: u64,
    /// Retransmissions received.
    pub pkt_recv_retrans: u64,
    /// Packets given up at the receiver (too late: never delivered).
    pub pkt_recv_drop: u64,
    /// Packets dropped by the sender before they were acknowledged.
    pub pkt_send_drop: u64,
    /// Duplicates and packets that came after their time.
    pub pkt_recv_belated: u64,
    /// Payload bytes sent (first transmissions).
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_recv: u64,
    /// Payloads that could not be decrypted.
    pub pkt_recv_undecrypted: u64,
    /// Smoothed round-trip time, µs.
    pub rtt: u32,
    /// Its variance, µs.
    pub rtt_var: u32,
    /// The peer's estimate of the link capacity, packets per second.
    pub capacity: u32,
    /// The rate received, bytes per second (over the last second).
    pub recv_rate: u64,
    /// The rate sent, bytes per second (over the last second).
    pub send_rate: u64,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// The peer sent a shutdown.
    Shutdown,
    /// The peer was silent for the idle timeout.
    Timeout,
    /// We closed it.
    Local,
}

#[derive(Debug)]
struct Sent {
    seq: Seq,
    msg_no: u32,
    timestamp: u32,
    key: KeyFlag,
    payload: Bytes,
    /// When it was handed in.
    origin: u64,
    /// When it was last put on the wire (0: not yet).
    last_sent: u64,
    /// When it was last retransmitted (0: never).
    last_rexmit: u64,
}

#[derive(Debug)]
enum Slot {
    Empty,
    /// Given up by the sender (drop request) or by us.
    Dropped,
    Full {
        ts: i64,
        payload: Bytes,
    },
}

/// The sans-IO connection. See the module documentation.
#[derive(Debug)]
pub struct Connection {
    cfg: ConnConfig,
    /// Our clock's origin for the timestamps we send, µs.
    start: u64,
    crypto: Option<Crypto>,
    // -- sender --
    snd_next: Seq,
    snd_msg: u32,
    snd_buf: VecDeque<Sent>,
    /// Index into `snd_buf` of the first packet not yet sent.
    snd_unsent: usize,
    snd_loss: LossList,
    /// Retransmissions in the order they went, each with when it is due
    /// again if still unacknowledged (µs).
    rexmit_watch: VecDeque<(u64, Seq)>,
    snd_acked: Seq,
    /// When the ACK last moved forward, µs.
    ack_progress: u64,
    /// When the tail was last probed, µs.
    last_probe: u64,
    /// Pacing: the earliest time the next packet may go, µs.
    pace_next: u64,
    /// Input bytes in the current second, and the rate of the last one.
    in_bytes: u64,
    in_rate: u64,
    rate_window: u64,
    send_bytes_window: u64,
    recv_bytes_window: u64,
    // -- receiver --
    rcv_base: Seq,
    rcv_buf: VecDeque<Slot>,
    /// One past the highest sequence number received.
    rcv_next: Seq,
    rcv_loss: LossList,
    ts_wrap: Wrap32,
    /// Local µs = `tsbpd_base` + extended timestamp (+ latency to deliver).
    tsbpd_base: Option<i64>,
    drift_sum: i64,
    drift_n: u32,
    delivered: VecDeque<Bytes>,
    next_ack: u64,
    ack_no: u32,
    last_acked: Option<Seq>,
    since_light: u32,
    acks: VecDeque<(u32, u64)>,
    next_nak: u64,
    // -- both --
    rtt: u64,
    rtt_var: u64,
    rtt_sampled: bool,
    /// The peer's RTT figure is a measurement, not the initial guess.
    peer_rtt_known: bool,
    /// When the last ACK arrived, µs.
    last_ack_at: u64,
    /// When unacknowledged packets last went again together, µs.
    last_go_back: u64,
    /// When the connection was established, µs.
    opened: u64,
    last_recv: u64,
    last_send: u64,
    out: VecDeque<Bytes>,
    stats: Stats,
    end: Option<ConnEnd>,
    /// Closing once what was sent is acknowledged and played out: the
    /// latest time to give up waiting, µs.
    linger_until: Option<u64>,
    /// When everything sent was acknowledged, while closing.
    drained_at: Option<u64>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Connection {
    /// A connection established at `now`.
    pub fn new(cfg: ConnConfig, now: Instant, crypto: Option<Crypto>) -> Self {
        let t = now.as_micros();
        Connection {
            snd_next: cfg.send_isn,
            snd_acked: cfg.send_isn,
            ack_progress: t,
            last_probe: t,
            rcv_base: cfg.recv_isn,
            rcv_next: cfg.recv_isn,
            cfg,
            start: t.saturating_sub(1),
            crypto,
            snd_msg: 1,
            snd_buf: VecDeque::new(),
            snd_unsent: 0,
            snd_loss: LossList::new(),
            rexmit_watch: VecDeque::new(),
            pace_next: t,
            in_bytes: 0,
            in_rate: 0,
            rate_window: t,
            send_bytes_window: 0,
            recv_bytes_window: 0,
            rcv_buf: VecDeque::new(),
            rcv_loss: LossList::new(),
            ts_wrap: Wrap32::new(),
            tsbpd_base: None,
            drift_sum: 0,
            drift_n: 0,
            delivered: VecDeque::new(),
            next_ack: t + SYN,
            ack_no: 0,
            last_acked: None,
            since_light: 0,
            acks: VecDeque::new(),
            next_nak: t + MIN_NAK_INTERVAL,
            rtt: u64::from(INITIAL_RTT),
            rtt_var: u64::from(INITIAL_RTT / 2),
            rtt_sampled: false,
            peer_rtt_known: false,
            last_ack_at: 0,
            last_go_back: t,
            opened: t,
            last_recv: t,
            last_send: t,
            out: VecDeque::new(),
            stats: Stats::default(),
            end: None,
            linger_until: None,
            drained_at: None,
        }
    }

    /// Counts the time stamps we send from `origin` instead of from when
    /// the connection started (for tests that start near their wrap).
    pub fn set_time_origin(&mut self, origin: Instant) {
        self.start = origin.as_micros();
    }

    /// Its settings.
    pub fn config(&self) -> &ConnConfig {
        &self.cfg
    }

    /// What it counted.
    pub fn stats(&self) -> Stats {
        Stats {
            rtt: u32::try_from(self.rtt).unwrap_or(u32::MAX),
            rtt_var: u32::try_from(self.rtt_var).unwrap_or(u32::MAX),
            ..self.stats
        }
    }

    /// Why it ended, once it has.
    pub fn end(&self) -> Option<ConnEnd> {
        self.end
    }

    /// Packets waiting in the send buffer (unacknowledged or unsent).
    pub fn send_buffered(&self) -> usize {
        self.snd_buf.len()
    }

    fn timestamp(&self, now: u64) -> u32 {
        // The timestamp field wraps every 2^32 µs (71.6 minutes).
        (now.wrapping_sub(self.start) & 0xFFFF_FFFF) as u32
    }

    fn control(&mut self, now: u64, control: Control) {
        let p = ControlPacket {
            timestamp: self.timestamp(now),
            dest: self.cfg.peer_id,
            control,
        };
        self.out.push_back(p.to_bytes());
        self.last_send = now;
    }

    /// Queues a payload (at most [`crate::MAX_PAYLOAD`] bytes) to send.
    pub fn send(&mut self, now: Instant, payload: Bytes) {
        if self.end.is_some() {
            return;
        }
        let t = now.as_micros();
        let seq = self.snd_next;
        self.snd_next = seq.next();
        let msg_no = self.snd_msg;
        self.snd_msg = next_msg(msg_no);
        self.in_bytes += payload.len() as u64;
        let (key, payload) = match &self.crypto {
            Some(c) => {
                let mut b = BytesMut::from(&payload[..]);
                let k = c.current_key();
                // The current key always exists: this cannot fail.
                if c.encrypt(k, seq.get(), &mut b).is_err() {
                    return;
                }
                (
                    match k {
                        KeyIndex::Even => KeyFlag::Even,
                        KeyIndex::Odd => KeyFlag::Odd,
                    },
                    b.freeze(),
                )
            }
            None => (KeyFlag::Clear, payload),
        };
        self.snd_buf.push_back(Sent {
            seq,
            msg_no,
            timestamp: self.timestamp(t),
            key,
            payload,
            origin: t,
            last_sent: 0,
            last_rexmit: 0,
        });
        self.stats.pkt_sent += 1;
        self.flush_sends(t);
    }

    fn pace_gap(&self, len: usize) -> u64 {
        let rate =
            (self.in_rate * u64::from(100 + self.cfg.overhead_pct) / 100).max(self.cfg.min_pace);
        (len as u64 + 44) * 1_000_000 / rate.max(1)
    }

    fn wire(&mut self, now: u64, i: usize, retransmitted: bool) {
        let again = now + self.rexmit_after();
        let room = self.rexmit_watch.len() < 2 * self.snd_buf.len();
        let Some(p) = self.snd_buf.get_mut(i) else {
            return;
        };
        p.last_sent = now;
        if retransmitted {
            p.last_rexmit = now;
            // Bounded by the send buffer: a packet is watched once per
            // retransmission, and the buffer is bounded by the latency.
            if room {
                self.rexmit_watch.push_back((again, p.seq));
            }
        }
        let p = &self.snd_buf[i];
        let d = DataPacket {
            seq: p.seq,
            position: Position::Solo,
            in_order: false,
            key: p.key,
            retransmitted,
            msg_no: p.msg_no,
            timestamp: p.timestamp,
            dest: self.cfg.peer_id,
            payload: p.payload.clone(),
        };
        let len = d.payload.len();
        self.out.push_back(d.to_bytes());
        self.last_send = now;
        self.send_bytes_window += len as u64;
        if retransmitted {
            self.stats.pkt_retrans += 1;
        } else {
            self.stats.bytes_sent += len as u64;
        }
        self.pace_next = self.pace_next.max(now.saturating_sub(SYN)) + self.pace_gap(len);
    }

    /// Sends retransmissions, then new packets, as pacing and the flow
    /// window allow.
    fn flush_sends(&mut self, now: u64) {
        while self.pace_next <= now {
            // Retransmissions first.
            if let Some(s) = self.snd_loss.pop_first() {
                let Some(i) = self.index_of(s) else {
                    // No longer buffered: neither is anything before it;
                    // past the buffer, nothing was sent.
                    match self.snd_buf.front() {
                        Some(f) if s.diff(f.seq) < 0 => self.snd_loss.remove_before(f.seq),
                        _ => self.snd_loss.clear(),
                    }
                    continue;
                };
                let last = self.snd_buf[i].last_rexmit;
                // Asked again within half a round trip of a retransmission:
                // the retransmission may still be on its way (a periodic NAK
                // sent before it arrived). The first transmission never
                // stops a retransmission: a NAK means it was lost.
                if last != 0 && now.saturating_sub(last) < self.rtt.min(MIN_NAK_INTERVAL) / 2 {
                    continue;
                }
                self.wire(now, i, true);
                continue;
            }
            if self.snd_unsent >= self.snd_buf.len() {
                break;
            }
            let in_flight = self.snd_buf[self.snd_unsent].seq.diff(self.snd_acked);
            if in_flight >= 0 && in_flight as u32 >= self.cfg.peer_window {
                break;
            }
            let i = self.snd_unsent;
            self.snd_unsent += 1;
            self.wire(now, i, false);
        }
    }

    fn index_of(&self, s: Seq) -> Option<usize> {
        let first = self.snd_buf.front()?.seq;
        let d = s.diff(first);
        (d >= 0 && (d as usize) < self.snd_buf.len()).then_some(d as usize)
    }

    /// The retransmission timeout, µs.
    fn rto(&self) -> u64 {
        (self.rtt + 4 * self.rtt_var + SYN).max(3 * SYN)
    }

    /// How long a packet may stay unacknowledged before it is taken as
    /// lost, µs: a round trip, its variance and the receiver's ACK period
    /// (which is not kept exactly), and at least three ACK periods.
    fn rexmit_after(&self) -> u64 {
        if self.peer_rtt_known {
            (self.rtt + 4 * self.rtt_var + SYN).max(3 * SYN)
        } else {
            3 * SYN
        }
    }

    /// Whether `t` is in the connection's start, when the receiver does not
    /// yet ask again for what it lost.
    fn in_startup(&self, t: u64) -> bool {
        t < self.opened + STARTUP || !self.peer_rtt_known
    }

    /// When the first unacknowledged packet (if an ACK came after it went
    /// out) or the oldest watched retransmission is due again.
    fn rexmit_due(&self) -> Option<u64> {
        let head = self.snd_buf.front().and_then(|p| {
            (self.snd_unsent > 0
                && p.seq == self.snd_acked
                && p.last_sent != 0
                && p.last_rexmit == 0
                && self.last_ack_at > p.last_sent
                && !self.snd_loss.contains(p.seq))
            .then(|| p.last_sent + self.rexmit_after())
        });
        let watched = self.rexmit_watch.front().map(|w| w.0);
        let go_back = Some(self.last_go_back + self.rexmit_after())
            .filter(|&t| self.snd_unsent > 0 && self.in_startup(t));
        [head, watched, go_back].into_iter().flatten().min()
    }

    /// A receiver asks again for a lost packet only at its periodic NAK,
    /// which libsrt first schedules from its initial RTT guess (150 ms
    /// after a loss: longer than a live latency), and NAKs and ACKs
    /// themselves can be lost. So, besides what NAKs ask for, a packet goes
    /// again when it stays unacknowledged past
    /// [`rexmit_after`](Self::rexmit_after) from its last sending and
    ///
    /// * it is the first unacknowledged one and an ACK came after it went
    ///   out (the receiver is there and names it as its first hole), or
    /// * it was retransmitted before (it was reported lost).
    ///
    /// A wrong guess costs one packet per period.
    ///
    /// A libsrt receiver sends its first periodic NAK only
    /// [`STARTUP`] after the connection (it schedules it from its initial
    /// RTT guess), and until it has measured the round trip it does not
    /// repeat a lost ACK either; data sent before our handshake answer
    /// reached it is discarded. So in the first [`STARTUP`] (and for as long
    /// as its ACKs still carry the initial RTT), once per period every
    /// packet sent that long ago and not acknowledged goes again (at most
    /// [`GO_BACK_MAX`]): a hole whose NAK and ACK were both lost is never
    /// named otherwise.
    fn rexmit_lost(&mut self, now: u64) {
        let after = self.rexmit_after();
        let go_back_at = self.last_go_back + after;
        if self.in_startup(go_back_at) && self.snd_unsent > 0 && now >= go_back_at {
            self.last_go_back = now;
            let first = self.index_of(self.snd_acked).unwrap_or(0);
            let mut n = 0;
            for p in self.snd_buf.range(first..self.snd_unsent) {
                if n >= GO_BACK_MAX {
                    break;
                }
                if now >= p.last_sent + after {
                    self.snd_loss.insert(p.seq, p.seq);
                    n += 1;
                }
            }
        }
        if let Some(p) = self.snd_buf.front() {
            if self.snd_unsent > 0
                && p.seq == self.snd_acked
                && p.last_sent != 0
                && p.last_rexmit == 0
                && self.last_ack_at > p.last_sent
                && now >= p.last_sent + after
            {
                let s = self.snd_acked;
                self.snd_loss.insert(s, s);
            }
        }
        while let Some(&(due, seq)) = self.rexmit_watch.front() {
            if due > now {
                break;
            }
            self.rexmit_watch.pop_front();
            let Some(i) = self.index_of(seq) else {
                continue;
            };
            let p = &self.snd_buf[i];
            if seq.diff(self.snd_acked) >= 0 && i < self.snd_unsent && now >= p.last_sent + after {
                self.snd_loss.insert(seq, seq);
            }
        }
    }

    /// A lost last packet shows no gap to the receiver, so nothing NAKs it:
    /// when the ACK has not moved for a retransmission timeout, the newest
    /// packet sent goes again (a tail probe), and the receiver reports the
    /// gap before it, if any.
    fn probe_tail(&mut self, now: u64) {
        if self.snd_unsent == 0 || self.snd_acked == self.snd_buf[self.snd_unsent - 1].seq.next() {
            return;
        }
        let rto = self.rto();
        if now.saturating_sub(self.ack_progress) < rto || now.saturating_sub(self.last_probe) < rto
        {
            return;
        }
        self.last_probe = now;
        let i = self.snd_unsent - 1;
        if now.saturating_sub(self.snd_buf[i].last_sent) >= rto {
            self.wire(now, i, true);
        }
    }

    /// How long an unacknowledged packet is kept, µs.
    fn send_drop_after(&self) -> u64 {
        us(self.cfg.send_latency).max(SEND_DROP_MIN) + 2 * SYN
    }

    /// The sender's drop: packets older than the peer could still use.
    /// The peer's TSBPD clock runs behind ours by the one-way delay and
    /// its jitter, so "too late" is judged generously, as libsrt judges it:
    /// the peer's latency, at least [`SEND_DROP_MIN`], plus two SYN
    /// intervals. (A tighter limit dropped, and told the peer to skip,
    /// packets it was still waiting for.)
    fn drop_old_sends(&mut self, now: u64) {
        if !self.cfg.too_late_drop {
            return;
        }
        let limit = self.send_drop_after();
        let mut dropped: Option<(u32, Seq, Seq)> = None;
        while let Some(p) = self.snd_buf.front() {
            if now.saturating_sub(p.origin) <= limit {
                break;
            }
            let unacked = p.seq.diff(self.snd_acked) >= 0;
            let (seq, msg) = (p.seq, p.msg_no);
            self.snd_buf.pop_front();
            self.snd_unsent = self.snd_unsent.saturating_sub(1);
            self.snd_loss.remove(seq);
            if unacked {
                self.stats.pkt_send_drop += 1;
                dropped = Some(match dropped {
                    None => (msg, seq, seq),
                    Some((m, a, _)) => (m, a, seq),
                });
            }
        }
        if let Some((msg_no, first, last)) = dropped {
            if last.diff(self.snd_acked) >= 0 {
                self.snd_acked = last.next();
            }
            self.control(
                now,
                Control::DropReq {
                    msg_no,
                    first,
                    last,
                },
            );
        }
    }

    /// A datagram from the peer (already routed to this connection). An
    /// encrypted payload is decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, mut data: BytesMut) {
        if self.end.is_some() || data.len() < HEADER_LEN {
            return;
        }
        let t = now.as_micros();
        self.last_recv = t;
        if data[0] & 0x80 == 0 {
            let kk = (data[4] >> 3) & 3;
            if kk != 0 {
                let seq = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let key = if kk == 2 {
                    KeyIndex::Odd
                } else {
                    KeyIndex::Even
                };
                let ok = match &self.crypto {
                    Some(c) => c.decrypt(key, seq, &mut data[HEADER_LEN..]).is_ok(),
                    None => false,
                };
                if !ok {
                    self.stats.pkt_recv_undecrypted += 1;
                    return;
                }
                data[4] &= !0x18;
            }
        }
        let Ok(p) = Packet::parse(data.freeze()) else {
            return;
        };
        match p {
            Packet::Data(d) => self.on_data(t, d),
            Packet::Control(c) => self.on_control(t, c),
        }
    }

    fn on_data(&mut self, now: u64, d: DataPacket) {
        let len = d.payload.len() as u64;
        let ts = self.ts_wrap.extend(u64::from(d.timestamp));
        let arrival = now as i64;
        let base = *self.tsbpd_base.get_or_insert(arrival - ts);
        if !d.retransmitted {
            // Drift: how much later than its time stamp says it arrived.
            self.drift_sum += arrival - (base + ts);
            self.drift_n += 1;
            if self.drift_n >= DRIFT_SAMPLES {
                let avg = self.drift_sum / i64::from(self.drift_n);
                if avg.abs() > DRIFT_TOLERANCE {
                    self.tsbpd_base = Some(base + avg);
                }
                self.drift_sum = 0;
                self.drift_n = 0;
            }
        }
        let off = d.seq.diff(self.rcv_base);
        if off < 0 {
            self.stats.pkt_recv_belated += 1;
            return;
        }
        let off = off as usize;
        if off >= self.cfg.recv_window as usize {
            // Past the buffer: the sender ignores our window.
            self.stats.pkt_recv_drop += 1;
            return;
        }
        if d.seq.diff(self.rcv_next) >= 0 {
            if d.seq != self.rcv_next {
                let from = self.rcv_next;
                let to = d.seq.add(-1);
                self.stats.pkt_recv_loss += (to.diff(from) + 1) as u64;
                self.rcv_loss.insert(from, to);
                // Report at once.
                self.control(now, Control::Nak(vec![(from, to)]));
            }
            self.rcv_next = d.seq.next();
        } else if !self.rcv_loss.remove(d.seq) {
            self.stats.pkt_recv_belated += 1;
            return;
        }
        while self.rcv_buf.len() <= off {
            self.rcv_buf.push_back(Slot::Empty);
        }
        if !matches!(self.rcv_buf[off], Slot::Empty) {
            self.stats.pkt_recv_belated += 1;
            return;
        }
        self.rcv_buf[off] = Slot::Full {
            ts,
            payload: d.payload,
        };
        self.stats.pkt_recv += 1;
        self.stats.bytes_recv += len;
        self.recv_bytes_window += len;
        if d.retransmitted {
            self.stats.pkt_recv_retrans += 1;
        }
        self.since_light += 1;
        if self.since_light >= LIGHT_ACK_EVERY {
            self.since_light = 0;
            let last = self.ack_seq();
            self.control(
                now,
                Control::Ack {
                    ack_no: 0,
                    info: AckInfo {
                        last,
                        light: true,
                        ..AckInfo::default()
                    },
                },
            );
        }
        self.deliver(now);
    }

    /// The first sequence number not received.
    fn ack_seq(&self) -> Seq {
        self.rcv_loss.first().unwrap_or(self.rcv_next)
    }

    fn deliver_at(&self, ts: i64) -> i64 {
        self.tsbpd_base.unwrap_or(0) + ts + us(self.cfg.recv_latency) as i64
    }

    /// Hands over what is due, dropping what is too late to wait for.
    fn deliver(&mut self, now: u64) {
        let now = now as i64;
        loop {
            match self.rcv_buf.front() {
                Some(Slot::Full { ts, .. }) => {
                    if self.deliver_at(*ts) > now {
                        break;
                    }
                    if let Some(Slot::Full { payload, .. }) = self.rcv_buf.pop_front() {
                        self.delivered.push_back(payload);
                    }
                    self.rcv_base = self.rcv_base.next();
                }
                Some(Slot::Dropped) => {
                    self.rcv_buf.pop_front();
                    self.rcv_base = self.rcv_base.next();
                }
                Some(Slot::Empty) => {
                    // A hole: wait for it until a later packet is due.
                    let due = self.rcv_buf.iter().position(|s| match s {
                        Slot::Full { ts, .. } => self.deliver_at(*ts) <= now,
                        _ => false,
                    });
                    let Some(k) = due.filter(|_| self.cfg.too_late_drop) else {
                        break;
                    };
                    for _ in 0..k {
                        if let Some(Slot::Empty) = self.rcv_buf.pop_front() {
                            self.stats.pkt_recv_drop += 1;
                        }
                        self.rcv_loss.remove(self.rcv_base);
                        self.rcv_base = self.rcv_base.next();
                    }
                }
                None => break,
            }
        }
        self.rcv_loss.remove_before(self.rcv_base);
        if self.rcv_next.diff(self.rcv_base) < 0 {
            self.rcv_next = self.rcv_base;
        }
    }

    fn on_control(&mut self, now: u64, c: ControlPacket) {
        match c.control {
            Control::Ack { ack_no, info } => {
                if !info.light {
                    if info.rtt > 0 {
                        self.rtt = u64::from(info.rtt);
                        self.rtt_var = u64::from(info.rtt_var);
                        // Until its first ACKACK arrives, a receiver reports
                        // the initial 100 ms and 50 ms of the specification.
                        self.peer_rtt_known =
                            (info.rtt, info.rtt_var) != (INITIAL_RTT, INITIAL_RTT / 2);
                    }
                    self.control(now, Control::AckAck { ack_no });
                    self.stats.capacity = info.capacity;
                }
                let last = info.last;
                // Not beyond what we sent.
                if last.diff(self.snd_next) > 0 {
                    return;
                }
                self.last_ack_at = now;
                if last.diff(self.snd_acked) > 0 {
                    self.snd_acked = last;
                    self.ack_progress = now;
                }
                while let Some(p) = self.snd_buf.front() {
                    if p.seq.diff(last) >= 0 || self.snd_unsent == 0 {
                        break;
                    }
                    self.snd_buf.pop_front();
                    self.snd_unsent -= 1;
                }
                self.snd_loss.remove_before(last);
                self.rexmit_lost(now);
                self.flush_sends(now);
                self.check_linger(now);
            }
            Control::AckAck { ack_no } => {
                if let Some(pos) = self.acks.iter().position(|(n, _)| *n == ack_no) {
                    let sent = self.acks[pos].1;
                    self.acks.drain(..=pos);
                    let sample = now.saturating_sub(sent);
                    if self.rtt_sampled {
                        let diff = sample.abs_diff(self.rtt);
                        self.rtt_var = (self.rtt_var * 3 + diff) / 4;
                        self.rtt = (self.rtt * 7 + sample) / 8;
                    } else {
                        // The first sample replaces the initial guess.
                        self.rtt_sampled = true;
                        self.rtt = sample;
                        self.rtt_var = sample / 2;
                    }
                }
            }
            Control::Nak(ranges) => {
                for (a, z) in ranges {
                    // Only what is still buffered and was sent: both ends
                    // within [acknowledged, next) (a range checked at one
                    // end only could wrap around the sequence space and
                    // name a billion numbers).
                    let a = if a.diff(self.snd_acked) < 0 {
                        self.snd_acked
                    } else {
                        a
                    };
                    let sent = |s: Seq| s.diff(self.snd_acked) >= 0 && s.diff(self.snd_next) < 0;
                    if !sent(a) || !sent(z) || z.diff(a) < 0 {
                        continue;
                    }
                    self.stats.pkt_send_loss += (z.diff(a) + 1) as u64;
                    self.snd_loss.insert(a, z);
                }
                self.flush_sends(now);
            }
            Control::DropReq { first, last, .. } => {
                let mut s = first;
                let mut n = 0;
                while s.diff(last) <= 0 && n < 8192 {
                    let off = s.diff(self.rcv_base);
                    if off >= 0 && (off as usize) < self.cfg.recv_window as usize {
                        let off = off as usize;
                        while self.rcv_buf.len() <= off {
                            self.rcv_buf.push_back(Slot::Empty);
                        }
                        if matches!(self.rcv_buf[off], Slot::Empty) {
                            self.rcv_buf[off] = Slot::Dropped;
                            self.stats.pkt_recv_drop += 1;
                        }
                        self.rcv_loss.remove(s);
                        if s.diff(self.rcv_next) >= 0 {
                            self.rcv_next = s.next();
                        }
                    }
                    s = s.next();
                    n += 1;
                }
                self.deliver(now);
            }
            Control::Shutdown => {
                // The sender is done: what arrived is delivered now, holes
                // are given up.
                while let Some(slot) = self.rcv_buf.pop_front() {
                    match slot {
                        Slot::Full { payload, .. } => self.delivered.push_back(payload),
                        Slot::Empty => self.stats.pkt_recv_drop += 1,
                        Slot::Dropped => {}
                    }
                    self.rcv_base = self.rcv_base.next();
                }
                self.rcv_loss.clear();
                self.end = Some(ConnEnd::Shutdown);
            }
            Control::KeepAlive
            | Control::Handshake(_)
            | Control::CongestionWarning
            | Control::PeerError(_)
            | Control::User { .. }
            | Control::Unknown { .. } => {}
        }
    }

    /// The next payload due for delivery.
    pub fn poll_payload(&mut self) -> Option<Bytes> {
        self.delivered.pop_front()
    }

    /// The next datagram to send to the peer.
    pub fn poll_datagram(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.end.is_some() {
            return None;
        }
        let mut t = self
            .next_ack
            .min(self.last_send + us(self.cfg.keepalive))
            .min(self.last_recv + us(self.cfg.idle_timeout));
        if !self.rcv_loss.is_empty() {
            t = t.min(self.next_nak);
        }
        if !self.snd_loss.is_empty() || self.snd_unsent < self.snd_buf.len() {
            t = t.min(self.pace_next);
        }
        if let Some(front) = self.snd_buf.front() {
            t = t.min(front.origin + self.send_drop_after() + 1);
            if self.snd_unsent > 0 {
                t = t.min(self.ack_progress.max(self.last_probe) + self.rto());
            }
        }
        if let Some(l) = self.linger_done_at() {
            t = t.min(l);
        }
        if let Some(h) = self.rexmit_due() {
            t = t.min(h);
        }
        if let Some(due) = self.rcv_buf.iter().find_map(|s| match s {
            Slot::Full { ts, .. } => Some(self.deliver_at(*ts)),
            _ => None,
        }) {
            t = t.min(u64::try_from(due.max(0)).unwrap_or(0));
        }
        Some(Instant::from_micros(t))
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.end.is_some() {
            return;
        }
        let t = now.as_micros();
        if t >= self.last_recv + us(self.cfg.idle_timeout) {
            self.end = Some(ConnEnd::Timeout);
            return;
        }
        if t >= self.rate_window + 1_000_000 {
            let span = (t - self.rate_window).max(1);
            self.in_rate = self.in_bytes * 1_000_000 / span;
            self.stats.send_rate = self.send_bytes_window * 1_000_000 / span;
            self.stats.recv_rate = self.recv_bytes_window * 1_000_000 / span;
            self.in_bytes = 0;
            self.send_bytes_window = 0;
            self.recv_bytes_window = 0;
            self.rate_window = t;
        }
        self.deliver(t);
        if t >= self.next_ack {
            self.next_ack = t + SYN;
            self.full_ack(t);
        }
        if !self.rcv_loss.is_empty() && t >= self.next_nak {
            let ranges: Vec<(Seq, Seq)> = self.rcv_loss.ranges().take(MAX_NAK_RANGES).collect();
            self.control(t, Control::Nak(ranges));
        }
        if t >= self.next_nak {
            let interval = if self.rtt_sampled {
                ((self.rtt + 4 * self.rtt_var) / 2).max(MIN_NAK_INTERVAL)
            } else {
                MIN_NAK_INTERVAL
            };
            self.next_nak = t + interval;
        }
        self.drop_old_sends(t);
        self.rexmit_lost(t);
        self.probe_tail(t);
        self.flush_sends(t);
        if t >= self.last_send + us(self.cfg.keepalive) {
            self.control(t, Control::KeepAlive);
        }
        self.check_linger(t);
    }

    fn full_ack(&mut self, now: u64) {
        let last = self.ack_seq();
        if self.last_acked == Some(last) && self.stats.pkt_recv > 0 && self.acks.is_empty() {
            return;
        }
        if self.stats.pkt_recv == 0 {
            return;
        }
        self.last_acked = Some(last);
        self.ack_no = self.ack_no.wrapping_add(1).max(1);
        let used = self.rcv_buf.len() as u32;
        let info = AckInfo {
            last,
            rtt: u32::try_from(self.rtt).unwrap_or(u32::MAX),
            rtt_var: u32::try_from(self.rtt_var).unwrap_or(u32::MAX),
            avail: self.cfg.recv_window.saturating_sub(used).max(2),
            pkt_rate: u32::try_from(self.stats.recv_rate / 1316).unwrap_or(u32::MAX),
            capacity: 0,
            recv_rate: u32::try_from(self.stats.recv_rate).unwrap_or(u32::MAX),
            light: false,
        };
        let ack_no = self.ack_no;
        self.control(now, Control::Ack { ack_no, info });
        self.acks.push_back((ack_no, now));
        if self.acks.len() > ACK_HISTORY {
            self.acks.pop_front();
        }
    }

    /// Closes once everything queued was sent, acknowledged and had the
    /// peer's latency to be played out (or after `max_wait`): a shutdown
    /// then goes to the peer. Nothing sent before is cut off.
    pub fn close_after_linger(&mut self, now: Instant, max_wait: Duration) {
        if self.end.is_none() && self.linger_until.is_none() {
            self.linger_until = Some(now.as_micros() + us(max_wait));
            self.check_linger(now.as_micros());
        }
    }

    /// Whether a lingering close is under way.
    pub fn is_lingering(&self) -> bool {
        self.linger_until.is_some() && self.end.is_none()
    }

    fn linger_done_at(&self) -> Option<u64> {
        let until = self.linger_until?;
        let due = self
            .drained_at
            .map(|d| d + us(self.cfg.send_latency) + LINGER_MARGIN)
            .unwrap_or(until);
        Some(due.min(until))
    }

    fn check_linger(&mut self, now: u64) {
        if self.linger_until.is_none() || self.end.is_some() {
            return;
        }
        if self.drained_at.is_none()
            && self.snd_unsent >= self.snd_buf.len()
            && self.snd_acked == self.snd_next
        {
            self.drained_at = Some(now);
        }
        if self.linger_done_at().is_some_and(|t| now >= t) {
            self.close(Instant::from_micros(now));
        }
    }

    /// Closes: a shutdown goes to the peer.
    pub fn close(&mut self, now: Instant) {
        if self.end.is_none() {
            self.control(now.as_micros(), Control::Shutdown);
            self.end = Some(ConnEnd::Local);
        }
    }
}
