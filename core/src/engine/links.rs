//! Transport figures of live connections, for the stats API: what a
//! datagram protocol measures about its link (round trip, loss,
//! retransmissions, drops, rates) beside the stream-level counters.
//!
//! A protocol crate implements [`LinkSource`] over its sessions; the host
//! hands the sources to whatever renders the API, so the renderer needs no
//! protocol crate. Sources are read on request (about once a second per
//! scraper), never on the media path.

use alloc::string::String;
use alloc::vec::Vec;

/// One connection's link figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkReport {
    /// The protocol (`"srt"`).
    pub protocol: &'static str,
    /// The connection's id within its protocol (SRT: the socket id).
    pub id: u64,
    /// The stream (`APP/STREAM`).
    pub resource: String,
    /// Whether it publishes (else it plays).
    pub publishing: bool,
    /// The peer's address.
    pub peer: String,
    /// How the media travels (`"udp"`, `"tcp"`: RTSP's interleaved RTP).
    pub transport: &'static str,
    /// Its figures.
    pub figures: LinkFigures,
    /// What the link's peer gets less of, a word each (WebRTC: `"b-frames"`,
    /// H.264 with B-frames, which browsers' WebRTC decoders cannot reorder;
    /// `"no-audio:aac"`, audio in a codec the protocol cannot carry).
    pub notes: Vec<&'static str>,
}

/// What a connection counted, the figures `srt_bstats` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFigures {
    /// Smoothed round-trip time, µs.
    pub rtt_us: u64,
    /// Its variance, µs.
    pub rtt_var_us: u64,
    /// Data packets sent (first transmissions).
    pub pkt_sent: u64,
    /// Retransmissions sent.
    pub pkt_retrans: u64,
    /// Packets the peer reported lost.
    pub pkt_send_loss: u64,
    /// Packets the sender dropped before they were acknowledged.
    pub pkt_send_drop: u64,
    /// Data packets received (unique).
    pub pkt_recv: u64,
    /// Packets found missing at the receiver.
    pub pkt_recv_loss: u64,
    /// Retransmissions received.
    pub pkt_recv_retrans: u64,
    /// Packets given up at the receiver (too late: never delivered).
    pub pkt_recv_drop: u64,
    /// Payloads that could not be decrypted.
    pub pkt_recv_undecrypted: u64,
    /// Payload bytes sent (first transmissions).
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_recv: u64,
    /// Sending rate over the last second, bytes per second.
    pub send_rate: u64,
    /// Receiving rate over the last second, bytes per second.
    pub recv_rate: u64,
    /// The peer's estimate of the link's capacity, packets per second.
    pub capacity: u64,
}

/// Something that knows its live connections' link figures.
pub trait LinkSource: Send + Sync {
    /// Every live connection's figures.
    fn links(&self) -> Vec<LinkReport>;
}

/// Live connections' figures by id, shared by the sessions that write
/// them (at most about once a second each) and the API that reads them:
/// the [`LinkSource`] a protocol crate hands its host. A lock guards it;
/// no media packet takes it.
#[derive(Clone, Debug, Default)]
pub struct LinkRegistry(
    alloc::sync::Arc<std::sync::Mutex<alloc::collections::BTreeMap<u64, LinkReport>>>,
);

impl LinkRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `report` under its id, replacing what was there.
    pub fn update(&self, report: LinkReport) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(report.id, report);
        }
    }

    /// Forgets connection `id` (it ended).
    pub fn remove(&self, id: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }
}

impl LinkSource for LinkRegistry {
    fn links(&self) -> Vec<LinkReport> {
        match self.0.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}
