//! The stream-transport driver on async-io.

use crate::ShutdownSignal;
use arcly_core::bus::CloseReason;
use arcly_core::host::{Outbox, OwnedSockets, WRITE_TIMEOUT};
use arcly_core::session::{Conductor, Input, Session};
use async_io::{Async, Timer};
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

pub use arcly_host::Clock;

/// Driver settings.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Bytes read per system call at most.
    pub read_chunk: usize,
    /// How long a shut-down connection may take to send its goodbye.
    pub close_grace: Duration,
    /// A peer that takes no bytes for this long while output is queued is
    /// closed (its idle, handshake and lag limits keep running meanwhile).
    pub write_timeout: Duration,
    /// A player's bus deliveries are taken at most once per this long and
    /// written together (zero: each as it comes). Fewer, larger writes
    /// for up to this much more latency; see
    /// [`Outbox::merging`](arcly_core::host::Outbox::merging).
    pub merge_writes: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            read_chunk: 16 * 1024,
            close_grace: Duration::from_secs(2),
            write_timeout: WRITE_TIMEOUT,
            merge_writes: Duration::ZERO,
        }
    }
}

/// The largest datagram read on a session's own UDP sockets.
const MAX_DATAGRAM: usize = 65_536;

/// Reads of a quiet peer go through a stack buffer of this size.
const SMALL_READ: usize = 4096;

enum Wake {
    Read(io::Result<usize>),
    /// A datagram on one of the session's own UDP sockets: (local, from).
    Datagram(BytesMut, SocketAddr, SocketAddr),
    /// A small read, in a buffer of its own.
    Small(BytesMut),
    Writable,
    Delivered,
    Timeout,
    Shutdown,
}

/// Writes what fits without blocking. `Err` when the peer is gone.
fn flush(sock: &Async<TcpStream>, out: &mut Outbox, clock: &Clock) -> io::Result<()> {
    out.flush_with(|| clock.now(), |b| sock.get_ref().write_vectored(b))
}

/// Takes the conductor's transmits and writes what fits.
fn pump<S: Session>(
    sock: &Async<TcpStream>,
    conductor: &mut Conductor<S>,
    out: &mut Outbox,
    clock: &Clock,
) -> io::Result<()> {
    out.pump(
        conductor,
        || clock.now(),
        |b| sock.get_ref().write_vectored(b),
    )
}

/// The UDP sockets a session asked for.
type Owned = OwnedSockets<Async<UdpSocket>>;

/// Binds one of a session's own UDP sockets.
fn bind_udp(at: SocketAddr) -> io::Result<(Async<UdpSocket>, SocketAddr)> {
    let s = Async::new(UdpSocket::bind(at)?)?;
    let addr = s.get_ref().local_addr()?;
    Ok((s, addr))
}

/// Runs `conductor` over `sock` until the session closes, the peer goes
/// away, or `shutdown` fires. Same rules as `arcly_tokio::drive_stream`
/// (those of [`arcly_core::host`]): output is written as it fits and a peer
/// that takes nothing for `write_timeout` is closed; the socket is read only
/// while little is queued and the session wants input; deliveries are taken
/// only when everything before them was written, so a slow reader lags on
/// the bus instead of growing a buffer.
pub async fn drive_stream<S: Session>(
    sock: Async<TcpStream>,
    conductor: Conductor<S>,
    clock: Clock,
    shutdown: ShutdownSignal,
    cfg: DriverConfig,
    log: &(dyn Fn(String) + Send + Sync),
) -> io::Result<()> {
    drive(sock, conductor, clock, shutdown, cfg, log, ()).await
}

/// [`drive_stream`], with `keep` dropped with the future (a listener's
/// slots).
///
/// A function returning an `async move` block rather than an `async fn`:
/// the block keeps what it captures once, where an async function keeps its
/// arguments twice (as arguments and as the locals they become), in every
/// connection's task.
// An async fn here is what the doc comment says to avoid.
#[allow(clippy::manual_async_fn)]
pub(crate) fn drive<S: Session, L, K>(
    sock: Async<TcpStream>,
    mut conductor: Conductor<S>,
    clock: Clock,
    shutdown: ShutdownSignal,
    cfg: DriverConfig,
    log: L,
    keep: K,
) -> impl Future<Output = io::Result<()>>
where
    L: std::ops::Deref,
    L::Target: Fn(String),
{
    async move {
        let _keep = &keep;
        sock.get_ref().set_nodelay(true)?;
        // Grows with the peer's rate, from nothing to `read_chunk`.
        let mut rbuf = BytesMut::new();
        let mut want = SMALL_READ.min(cfg.read_chunk);
        let mut shutdown = pin!(shutdown.wait());
        let mut timer = Timer::never();
        let mut out = Outbox::merging(cfg.merge_writes);
        let mut eof = false;
        // The session's own UDP sockets (RTSP's RTP/RTCP pairs), bound on the
        // interface of this connection when it asks, and a buffer to read them.
        let ip = sock.get_ref().local_addr()?.ip();
        let mut owned = Owned::new();
        let mut dbuf: Vec<u8> = Vec::new();
        loop {
            loop {
                if let Err(e) = pump(&sock, &mut conductor, &mut out, &clock) {
                    conductor.handle_input(clock.now(), Input::Eof);
                    while let Some(line) = conductor.poll_log() {
                        log(line);
                    }
                    return Err(e);
                }
                owned.send(&mut out, |u, data, to| {
                    let _ = u.get_ref().send_to(data, to);
                });
                if !owned.answer(&mut conductor, ip, clock.now(), bind_udp) {
                    break;
                }
            }
            if !owned.is_empty() && dbuf.is_empty() {
                dbuf.resize(MAX_DATAGRAM, 0);
            }
            while let Some(line) = conductor.poll_log() {
                log(line);
            }
            if out.finished(&conductor, eof) {
                let _ = sock.get_ref().shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            if !out.is_empty() {
                conductor.check_lag(clock.now());
            }
            match out.next_wake(&conductor, cfg.write_timeout) {
                Some(t) => timer.set_at(clock.to_std(t)),
                None => timer = Timer::never(),
            }
            let read = out.may_read(&conductor, eof);
            let wake = poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                if !out.is_empty() && sock.poll_writable(cx).is_ready() {
                    return Poll::Ready(Wake::Writable);
                }
                if conductor.poll_session(cx, clock.now()).is_ready() {
                    return Poll::Ready(Wake::Delivered);
                }
                if out
                    .poll_deliveries(&mut conductor, cx, clock.now())
                    .is_ready()
                {
                    return Poll::Ready(Wake::Delivered);
                }
                for (u, local) in owned.iter() {
                    while u.poll_readable(cx).is_ready() {
                        match u.get_ref().recv_from(&mut dbuf) {
                            Ok((n, from)) => {
                                return Poll::Ready(Wake::Datagram(
                                    BytesMut::from(&dbuf[..n]),
                                    *local,
                                    from,
                                ))
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            // An ICMP error for an earlier send.
                            Err(_) => break,
                        }
                    }
                }
                if read {
                    while sock.poll_readable(cx).is_ready() {
                        let (r, room) = if want <= SMALL_READ {
                            // A quiet peer: read on the stack and keep only what
                            // came, so an idle connection holds no read buffer.
                            let mut small = [0u8; SMALL_READ];
                            match sock.get_ref().read(&mut small[..want]) {
                                Ok(n) if n > 0 => {
                                    if n == want {
                                        want = (want * 2).min(cfg.read_chunk);
                                    }
                                    return Poll::Ready(Wake::Small(BytesMut::from(&small[..n])));
                                }
                                r => (r, want),
                            }
                        } else {
                            if rbuf.capacity() - rbuf.len() < want / 4 {
                                rbuf.reserve(want);
                            }
                            let start = rbuf.len();
                            let room = rbuf.capacity() - start;
                            rbuf.resize(start + room, 0);
                            let r = sock.get_ref().read(&mut rbuf[start..]);
                            rbuf.truncate(start + *r.as_ref().unwrap_or(&0));
                            (r, room)
                        };
                        match r {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            r => {
                                if matches!(r, Ok(n) if n == room) {
                                    want = (want * 2).min(cfg.read_chunk);
                                }
                                return Poll::Ready(Wake::Read(r));
                            }
                        }
                    }
                }
                if Pin::new(&mut timer).poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timeout);
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Read(Ok(0)) => {
                    eof = true;
                    conductor.handle_input(clock.now(), Input::Eof);
                }
                Wake::Read(Ok(_)) => {
                    let data = rbuf.split();
                    conductor.handle_input(clock.now(), Input::Stream(data));
                }
                Wake::Small(data) => conductor.handle_input(clock.now(), Input::Stream(data)),
                Wake::Datagram(data, local, from) => {
                    conductor.handle_input(clock.now(), Input::Datagram { from, local, data })
                }
                Wake::Read(Err(e)) => {
                    conductor.handle_input(clock.now(), Input::Eof);
                    while let Some(line) = conductor.poll_log() {
                        log(line);
                    }
                    return Err(e);
                }
                Wake::Writable | Wake::Delivered => {}
                Wake::Timeout => {
                    let now = clock.now();
                    if out.stalled(now, cfg.write_timeout) {
                        conductor.write_timed_out(now, cfg.write_timeout);
                        while let Some(line) = conductor.poll_log() {
                            log(line);
                        }
                        let _ = sock.get_ref().shutdown(std::net::Shutdown::Both);
                        return Ok(());
                    }
                    conductor.handle_timeout(now);
                }
                Wake::Shutdown => {
                    conductor.close(clock.now(), CloseReason::Shutdown);
                    let goodbye = async {
                        while out.fill(&mut conductor, clock.now()) || !out.is_empty() {
                            flush(&sock, &mut out, &clock)?;
                            if !out.is_empty() {
                                sock.writable().await?;
                            }
                        }
                        io::Result::Ok(())
                    };
                    let grace = async {
                        Timer::after(cfg.close_grace).await;
                        io::Result::Ok(())
                    };
                    // Boxed: only a closing connection needs this state, and the
                    // future of every open one would otherwise hold room for it.
                    let _ = Box::pin(futures::future::select(pin!(goodbye), pin!(grace))).await;
                    let _ = sock.get_ref().shutdown(std::net::Shutdown::Both);
                    while let Some(line) = conductor.poll_log() {
                        log(line);
                    }
                    return Ok(());
                }
            }
        }
    }
}

use std::pin::Pin;
