//! The datagram driver: one UDP socket, many sessions, through an
//! [`EndpointHost`] (the routing, timers and delivery wake-ups are in core).

use crate::{Clock, ShutdownSignal};
use arcly_core::endpoint::{Endpoint, EndpointHost};
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

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

/// Runs `host`'s sessions on `sock` until `shutdown` fires. A send that
/// would block drops the datagram (UDP is lossy and every protocol on it
/// recovers or paces itself); log lines go to `log`.
pub async fn drive_endpoint<E: Endpoint>(
    sock: UdpSocket,
    mut host: EndpointHost<E>,
    clock: Clock,
    shutdown: ShutdownSignal,
    log: &(dyn Fn(String) + Send + Sync),
) -> io::Result<()> {
    let local = sock.local_addr()?;
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
        let deadline = host.poll_timeout();
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
    }
}
