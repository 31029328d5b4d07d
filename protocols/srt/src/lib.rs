//! arcly-srt: SRT (Secure Reliable Transport, draft-sharabayko-srt) as
//! sans-IO state machines, in live mode, carrying MPEG-TS.
//!
//! * [`packet`], [`handshake`]: the wire: data and control packets, the
//!   HSv5 handshake with HSREQ/HSRSP, KMREQ/KMRSP and the stream id.
//! * [`seq`]: 31-bit sequence numbers and loss lists.
//! * [`conn`]: an established connection: ACK/ACKACK with RTT, NAK and
//!   periodic NAK, the retransmission buffer bounded by the latency, TSBPD
//!   delivery with drift correction, too-late packet drop, keepalive, the
//!   flow window and pacing.
//! * [`crypto`]: AES-CTR payload encryption, key material (PBKDF2, RFC 3394
//!   key wrap).
//! * [`streamid`]: `#!::r=live/cam,m=publish` and `publish:live/cam`.
//! * [`media`]: MPEG-TS to the kernel's frames and back.
//! * [`SrtEndpoint`]: the listener on one UDP socket, an
//!   [`arcly_core::endpoint::Endpoint`]; its sessions are [`SrtSession`]s.
//! * [`SrtCaller`]: our caller, publishing to or pulling from a remote
//!   listener.
//!
//! Nothing here performs IO, reads a clock or a random source: time, the
//! datagrams and a random seed are inputs.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod caller;
pub mod conn;
pub mod crypto;
pub mod endpoint;
pub mod handshake;
mod link;
pub mod media;
pub mod packet;
pub mod random;
pub mod seq;
pub mod session;
pub mod streamid;

#[cfg(test)]
mod e2e_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;

pub use caller::{CallerConfig, CallerMode, SrtCaller};
pub use endpoint::{PassphraseUpdates, SrtEndpoint};
pub use session::SrtSession;

/// The SRT version we announce (1.5.1).
pub const SRT_VERSION: u32 = 0x01_05_01;

/// How long a sender whose stream ended waits at most for what it sent to
/// be acknowledged and played out before it shuts the connection.
pub const LINGER: Duration = Duration::from_secs(3);

/// The largest payload of a data packet.
pub const MAX_PAYLOAD: usize = 1456;

/// A passphrase for the streams whose resource matches a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPassphrase {
    /// `live/cam` exactly, or a prefix ending in `*` (`live/*`).
    pub pattern: String,
    /// Its passphrase (10 to 80 bytes).
    pub passphrase: String,
}

/// The listener's settings.
#[derive(Clone, Debug)]
pub struct SrtConfig {
    /// Our latency (TSBPD delay); each direction uses the larger of both
    /// sides'.
    pub latency: Duration,
    /// The passphrase of every stream without its own.
    pub passphrase: Option<String>,
    /// Passphrases per stream (the first match wins).
    pub passphrases: Vec<KeyPassphrase>,
    /// The largest packet (with IP and UDP headers).
    pub mtu: u32,
    /// Our flow window and receive buffer, packets.
    pub flow_window: u32,
    /// A peer silent this long is gone.
    pub peer_idle: Duration,
    /// Sessions at most.
    pub max_sessions: usize,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            latency: Duration::from_millis(120),
            passphrase: None,
            passphrases: Vec::new(),
            mtu: 1500,
            flow_window: 8192,
            peer_idle: Duration::from_secs(5),
            max_sessions: 10_000,
        }
    }
}

impl SrtConfig {
    /// The passphrase that protects `resource`.
    pub fn passphrase_for(&self, resource: &str) -> Option<&str> {
        self.passphrases
            .iter()
            .find(|k| match k.pattern.strip_suffix('*') {
                Some(prefix) => resource.starts_with(prefix),
                None => k.pattern == resource,
            })
            .map(|k| k.passphrase.as_str())
            .or(self.passphrase.as_deref())
    }
}

/// Why an SRT session ended or was refused, in a person's words.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtError {
    /// The stream id could not be read.
    #[error("{0}")]
    StreamId(#[from] streamid::StreamIdError),
    /// The conclusion had no HSREQ.
    #[error("the caller's handshake has no SRT options (HSREQ)")]
    NoHsReq,
    /// The caller encrypts but the stream has no passphrase.
    #[error("the caller encrypts, but this stream has no passphrase")]
    UnexpectedEncryption,
    /// The stream has a passphrase but the caller does not encrypt.
    #[error("this stream needs a passphrase, and the caller sent none")]
    PassphraseRequired,
    /// The key material could not be used (a wrong passphrase, most often).
    #[error("key material: {0}")]
    KeyMaterial(#[from] crypto::KmError),
    /// The remote listener refused us.
    #[error("the listener refused: {} (code {})", .0.describe(), .0.0 + 1000)]
    Refused(handshake::RejectCode),
    /// The remote listener does not speak HSv5.
    #[error("the listener does not speak HSv5")]
    Version,
    /// The remote listener never answered.
    #[error("no answer from the listener")]
    NoAnswer,
}

/// One session's figures, as the API shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The stream (`APP/STREAM`).
    pub resource: String,
    /// Whether it publishes.
    pub publishing: bool,
    /// The peer's address.
    pub peer: String,
    /// Its counts.
    pub stats: conn::Stats,
}

/// Ended sessions kept for [`SessionStats::take_ended`] at most.
const ENDED_KEPT: usize = 1024;

#[derive(Debug, Default)]
struct StatsInner {
    live: HashMap<u32, SessionInfo>,
    ended: std::collections::VecDeque<(u32, SessionInfo)>,
}

/// The live figures of an endpoint's sessions, updated by each session
/// about once a second and when it ends (never per packet).
#[derive(Clone, Debug, Default)]
pub struct SessionStats(Arc<Mutex<StatsInner>>);

impl SessionStats {
    pub(crate) fn update(&self, id: u32, info: SessionInfo) {
        if let Ok(mut m) = self.0.lock() {
            m.live.insert(id, info);
        }
    }

    pub(crate) fn remove(&self, id: u32) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(info) = m.live.remove(&id) {
                if m.ended.len() >= ENDED_KEPT {
                    m.ended.pop_front();
                }
                m.ended.push_back((id, info));
            }
        }
    }

    /// A copy of every live session's figures, by socket id.
    pub fn snapshot(&self) -> Vec<(u32, SessionInfo)> {
        match self.0.lock() {
            Ok(m) => {
                let mut v: Vec<_> = m.live.iter().map(|(k, v)| (*k, v.clone())).collect();
                v.sort_by_key(|(k, _)| *k);
                v
            }
            Err(_) => Vec::new(),
        }
    }

    /// The sessions that ended since the last call, with their last
    /// figures (the newest 1,024).
    pub fn take_ended(&self) -> Vec<(u32, SessionInfo)> {
        match self.0.lock() {
            Ok(mut m) => m.ended.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl core::fmt::Display for SessionInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "{} {} from {}: rtt {:.1} ms, sent {} (retransmitted {}, dropped {}), received {} (lost {}, recovered {}, dropped {}, undecryptable {})",
            if self.publishing { "publish of" } else { "play of" },
            self.resource,
            self.peer,
            f64::from(s.rtt) / 1000.0,
            s.pkt_sent,
            s.pkt_retrans,
            s.pkt_send_drop,
            s.pkt_recv,
            s.pkt_recv_loss,
            s.pkt_recv_retrans,
            s.pkt_recv_drop,
            s.pkt_recv_undecrypted
        )
    }
}

impl SessionInfo {
    /// The figures as the stats API shows every protocol's links.
    pub fn report(&self, id: u32) -> arcly_core::engine::LinkReport {
        let s = &self.stats;
        arcly_core::engine::LinkReport {
            protocol: "srt",
            id: u64::from(id),
            resource: self.resource.clone(),
            publishing: self.publishing,
            peer: self.peer.clone(),
            transport: "udp",
            notes: Vec::new(),
            figures: arcly_core::engine::LinkFigures {
                rtt_us: u64::from(s.rtt),
                rtt_var_us: u64::from(s.rtt_var),
                pkt_sent: s.pkt_sent,
                pkt_retrans: s.pkt_retrans,
                pkt_send_loss: s.pkt_send_loss,
                pkt_send_drop: s.pkt_send_drop,
                pkt_recv: s.pkt_recv,
                pkt_recv_loss: s.pkt_recv_loss,
                pkt_recv_retrans: s.pkt_recv_retrans,
                pkt_recv_drop: s.pkt_recv_drop,
                pkt_recv_undecrypted: s.pkt_recv_undecrypted,
                bytes_sent: s.bytes_sent,
                bytes_recv: s.bytes_recv,
                send_rate: s.send_rate,
                recv_rate: s.recv_rate,
                capacity: u64::from(s.capacity),
            },
        }
    }
}

impl arcly_core::engine::LinkSource for SessionStats {
    fn links(&self) -> Vec<arcly_core::engine::LinkReport> {
        self.snapshot()
            .into_iter()
            .map(|(id, info)| info.report(id))
            .collect()
    }
}
