//! The datagram driver on a plain thread: one UDP socket, many sessions,
//! through an [`EndpointHost`] (the routing, a timer heap and delivery
//! wake-ups are in core), waiting on mio's poller.

use crate::{Clock, Log, ShutdownHandle};
use arcly_core::endpoint::{Endpoint, EndpointHost};
use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker as MioWaker};
use std::io;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);
/// The largest datagram read.
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams received per turn at most, so timers and sends get a turn.
const RECV_PER_TURN: usize = 256;

/// Wakes the poller when a session has bus deliveries.
struct PollerWake(Arc<MioWaker>);

impl Wake for PollerWake {
    fn wake(self: Arc<Self>) {
        let _ = self.0.wake();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.wake();
    }
}

/// Runs `host`'s sessions on `sock` on the calling thread until `shutdown`
/// fires. A send that would block drops the datagram (UDP is lossy and every
/// protocol on it recovers or paces itself).
pub fn serve_endpoint<E: Endpoint>(
    sock: std::net::UdpSocket,
    mut host: EndpointHost<E>,
    clock: Clock,
    shutdown: ShutdownHandle,
    log: Log,
) -> io::Result<()> {
    sock.set_nonblocking(true)?;
    let local = sock.local_addr()?;
    let mut sock = UdpSocket::from_std(sock);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut sock, SOCKET, Interest::READABLE)?;
    let mio_waker = Arc::new(MioWaker::new(poll.registry(), WAKE)?);
    shutdown.watch(mio_waker.clone());
    let waker = Waker::from(Arc::new(PollerWake(mio_waker)));
    let cx = Context::from_waker(&waker);
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shutdown.is_triggered() {
        while let Some(t) = host.poll_transmit() {
            if let Some(to) = t.to {
                // Full socket buffer: the datagram is lost, as on the wire.
                let _ = sock.send_to(&t.data, to);
            }
        }
        while let Some(line) = host.poll_log() {
            log(line);
        }
        let ready = host.register_ready(&cx);
        let timeout = if ready {
            Duration::ZERO
        } else {
            match host.poll_timeout() {
                Some(t) => {
                    Duration::from_micros(t.as_micros().saturating_sub(clock.now().as_micros()))
                }
                None => Duration::from_secs(1),
            }
            .min(Duration::from_secs(1))
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log(format!("poll failed: {e}"));
            }
        }
        // Edge-triggered: read until it would block (or a turn's worth).
        for _ in 0..RECV_PER_TURN {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    host.handle_datagram(clock.now(), local, from, BytesMut::from(&buf[..n]))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier send: nothing to do.
                Err(_) => continue,
            }
        }
        let now = clock.now();
        if host.poll_timeout().is_some_and(|t| t <= now) {
            host.handle_timeout(now);
        }
        host.poll_deliveries(clock.now());
    }
    Ok(())
}
