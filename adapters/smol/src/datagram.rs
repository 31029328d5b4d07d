//! The datagram driver on async-io: one UDP socket, many sessions, through
//! an [`EndpointHost`] (the routing, timers and delivery wake-ups are in
//! core).

use crate::{Clock, ShutdownSignal};
use arcly_core::endpoint::{Endpoint, EndpointHost};
use async_io::{Async, Timer};
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io;
use std::net::UdpSocket;
use std::pin::{pin, Pin};
use std::task::Poll;

/// The largest datagram read.
const MAX_DATAGRAM: usize = 65_536;

/// Datagrams received per wake-up at most, so timers and sends get a turn.
const RECV_PER_TURN: usize = 64;

enum Wake {
    Datagram(BytesMut, std::net::SocketAddr),
    Ready,
    Timeout,
    Shutdown,
}

/// Runs `host`'s sessions on `sock` until `shutdown` fires; the same
/// contract as `arcly_tokio::drive_endpoint` (a send that would block drops
/// the datagram).
pub async fn drive_endpoint<E: Endpoint>(
    sock: Async<UdpSocket>,
    mut host: EndpointHost<E>,
    clock: Clock,
    shutdown: ShutdownSignal,
    log: &(dyn Fn(String) + Send + Sync),
) -> io::Result<()> {
    let local = sock.get_ref().local_addr()?;
    let mut shutdown = pin!(shutdown.wait());
    let mut timer = Timer::never();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        while let Some(t) = host.poll_transmit() {
            if let Some(to) = t.to {
                // Full socket buffer: the datagram is lost, as on the wire.
                let _ = sock.get_ref().send_to(&t.data, to);
            }
        }
        while let Some(line) = host.poll_log() {
            log(line);
        }
        match host.poll_timeout() {
            Some(t) => timer.set_at(clock.to_std(t)),
            None => timer = Timer::never(),
        }
        let mut received = 0;
        let wake = poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if host.register_ready(cx) {
                return Poll::Ready(Wake::Ready);
            }
            while received < RECV_PER_TURN && sock.poll_readable(cx).is_ready() {
                match sock.get_ref().recv_from(&mut buf) {
                    Ok((n, from)) => {
                        received += 1;
                        return Poll::Ready(Wake::Datagram(BytesMut::from(&buf[..n]), from));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    // An ICMP error for an earlier send: nothing to do.
                    Err(_) => return Poll::Ready(Wake::Ready),
                }
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(Wake::Timeout);
            }
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
    }
}
