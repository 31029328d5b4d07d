//! The datagram driver: one UDP socket, many sessions, through an
//! [`EndpointHost`] (the routing, timers and delivery wake-ups are in core).

use crate::sessions::{Registered, Sessions};
use crate::{Clock, ShutdownSignal};
use arcly_core::bus::CloseReason;
use arcly_core::endpoint::{Endpoint, EndpointHost};
use bytes::BytesMut;
use std::collections::{HashMap, HashSet};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

/// The largest datagram read.
const MAX_DATAGRAM: usize = 65_536;

/// Datagrams received per wake-up at most, so timers and sends get a turn.
const RECV_PER_TURN: usize = 64;

/// How often the sessions' list ([`drive_endpoint_tracked`]) is brought up
/// to date.
const LIST_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

enum Wake {
    Datagram(BytesMut, std::net::SocketAddr),
    Ready,
    Timeout,
    Shutdown,
}

/// Runs `host`'s sessions on `sock` until `shutdown` fires. A send that
/// would block drops the datagram (UDP is lossy and every protocol on it
/// recovers or paces itself); log lines go to `log`.
pub async fn drive_endpoint<E: Endpoint>(
    sock: UdpSocket,
    host: EndpointHost<E>,
    clock: Clock,
    shutdown: ShutdownSignal,
    log: &(dyn Fn(String) + Send + Sync),
) -> io::Result<()> {
    drive_endpoint_tracked(sock, host, clock, shutdown, log, None).await
}

/// [`drive_endpoint`], listing `host`'s sessions in `sessions` as the
/// given protocol: each appears once accepted, with its stream, role and
/// datagram bytes (brought up to date ten times a second), and leaves when
/// it ends; [`Sessions::end`] ends one as a shutdown would (its peer is
/// told).
pub async fn drive_endpoint_tracked<E: Endpoint>(
    sock: UdpSocket,
    mut host: EndpointHost<E>,
    clock: Clock,
    shutdown: ShutdownSignal,
    log: &(dyn Fn(String) + Send + Sync),
    sessions: Option<(Arc<Sessions>, &'static str)>,
) -> io::Result<()> {
    let local = sock.local_addr()?;
    let mut listed: HashMap<E::Key, Registered> = HashMap::new();
    let mut list_due = clock.now();
    let mut shutdown = pin!(shutdown.wait());
    let mut sleep = pin!(tokio::time::sleep(std::time::Duration::from_secs(3600)));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        while let Some(t) = host.poll_transmit() {
            if let Some(to) = t.to {
                // Full socket buffer: the datagram is lost, as on the wire.
                let _ = sock.try_send_to(&t.data, to);
            }
        }
        while let Some(line) = host.poll_log() {
            log(line);
        }
        let mut deadline = host.poll_timeout();
        if sessions.is_some() && !listed.is_empty() {
            // The list is brought up to date even when no datagram comes
            // (a session that ended and whose peer went quiet leaves it).
            deadline = Some(deadline.map_or(list_due, |t| t.min(list_due)));
        }
        if let Some(t) = deadline {
            sleep.as_mut().reset(clock.to_tokio(t));
        }
        let mut received = 0;
        let wake = poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if host.register_ready(cx) {
                return Poll::Ready(Wake::Ready);
            }
            if received < RECV_PER_TURN {
                let mut rb = ReadBuf::new(&mut buf);
                if let Poll::Ready(r) = sock.poll_recv_from(cx, &mut rb) {
                    received += 1;
                    return Poll::Ready(match r {
                        Ok(from) => Wake::Datagram(BytesMut::from(rb.filled()), from),
                        // An ICMP error for an earlier send: nothing to do.
                        Err(_) => Wake::Ready,
                    });
                }
            }
            if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timeout);
            }
            // The host waker fires when a session has bus deliveries.
            Poll::Pending
        })
        .await;
        let now = clock.now();
        match wake {
            Wake::Datagram(data, from) => host.handle_datagram(now, local, from, data),
            Wake::Ready => {}
            Wake::Timeout => host.handle_timeout(now),
            Wake::Shutdown => return Ok(()),
        }
        host.poll_deliveries(clock.now());
        if let Some((all, protocol)) = &sessions {
            let now = clock.now();
            if now >= list_due {
                list_due = now.saturating_add(LIST_EVERY);
                list(&mut host, &mut listed, all, protocol, now);
            }
        }
    }
}

/// Brings `listed` (and so `all`) up to date with `host`'s sessions, and
/// ends those [`Sessions::end`] was asked to.
fn list<E: Endpoint>(
    host: &mut EndpointHost<E>,
    listed: &mut HashMap<E::Key, Registered>,
    all: &Arc<Sessions>,
    protocol: &'static str,
    now: arcly_core::time::Instant,
) {
    let mut live = HashSet::with_capacity(listed.len());
    let mut to_end = Vec::new();
    for s in host.sessions() {
        let r = listed.entry(s.key.clone()).or_insert_with(|| match s.id {
            Some(id) => all.add_as(id, protocol, s.peer.to_string()),
            None => all.add(protocol, s.peer.to_string()),
        });
        let t = &r.tracked;
        t.bytes_in.store(s.bytes_in, Ordering::Relaxed);
        t.bytes_out.store(s.bytes_out, Ordering::Relaxed);
        t.set_stream(s.stream.map(|(k, a)| (k.to_string(), a.as_str())));
        if t.ended.swap(false, Ordering::AcqRel) {
            to_end.push(s.key.clone());
        }
        live.insert(s.key.clone());
    }
    // Those gone from the host leave the list (dropping their place).
    listed.retain(|k, _| live.contains(k));
    for k in to_end {
        host.end_session(now, &k, CloseReason::Ended);
    }
}
