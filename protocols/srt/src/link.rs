//! What the listener's and the caller's sessions share once connected: the
//! connection and MPEG-TS in one direction.

use core::net::SocketAddr;
use std::collections::VecDeque;

use arcly_core::session::{SessionEnd, SessionEvent, Transmit};
use arcly_core::time::Instant;

use crate::conn::{ConnEnd, Connection};
use crate::media::{TsEgress, TsIngest, TS_PAYLOAD};

/// Payloads the connection's send buffer holds at most before the egress
/// waits.
const SEND_BUFFER: usize = 8192;

/// A playing session stops taking deliveries while this many payloads wait
/// unsent.
const EGRESS_HIGH_WATER: usize = 512;

/// A connected session's transport and media.
#[derive(Debug)]
pub(crate) struct Link {
    pub conn: Connection,
    pub ingest: TsIngest,
    pub egress: TsEgress,
    /// We send media (else we receive it).
    pub sending: bool,
    ended: bool,
}

impl Link {
    pub fn new(conn: Connection, sending: bool) -> Self {
        Link {
            conn,
            ingest: TsIngest::new(),
            egress: TsEgress::new(),
            sending,
            ended: false,
        }
    }

    /// Moves media between the connection and the host, and datagrams to
    /// `out`; reports the end once.
    pub fn pump(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        out: &mut VecDeque<Transmit>,
        events: &mut VecDeque<SessionEvent>,
    ) {
        if self.sending {
            while self.conn.send_buffered() < SEND_BUFFER {
                let Some(p) = self.egress.poll_payload() else {
                    break;
                };
                self.conn.send(now, p);
            }
        } else {
            while let Some(p) = self.conn.poll_payload() {
                self.ingest.push(&p);
            }
            events.extend(core::iter::from_fn(|| self.ingest.poll_event()));
        }
        out.extend(
            core::iter::from_fn(|| self.conn.poll_datagram())
                .map(|d| Transmit::datagram(None, peer, d)),
        );
        if let (Some(end), false) = (self.conn.end(), self.ended) {
            self.ended = true;
            if !self.sending {
                self.ingest.finish();
                events.extend(core::iter::from_fn(|| self.ingest.poll_event()));
            }
            events.push_back(SessionEvent::Closed(match end {
                ConnEnd::Shutdown | ConnEnd::Local => SessionEnd::Normal,
                ConnEnd::Timeout => SessionEnd::Timeout,
            }));
        }
    }

    /// Whether the connection ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a player takes more deliveries now.
    pub fn wants_deliveries(&self) -> bool {
        self.egress.pending() < EGRESS_HIGH_WATER * TS_PAYLOAD
            && self.conn.send_buffered() < SEND_BUFFER
    }
}
