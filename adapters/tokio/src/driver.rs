//! The stream-transport driver: one TCP socket, one conductor.

use crate::sessions::Tracked;
use crate::{Clock, ShutdownSignal};
use arcly_core::bus::CloseReason;
use arcly_core::engine::{Action, StreamKey};
use arcly_core::host::{Outbox, OwnedSockets, WRITE_TIMEOUT};
use arcly_core::session::{Conductor, Input, Session};
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::io::AsyncWriteExt;
use tokio::io::ReadBuf;
use tokio::net::{TcpStream, UdpSocket};

/// Buffer sizes and limits of the driver.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Bytes read per system call at most.
    pub read_chunk: usize,
    /// How long a shut-down connection may take to send its goodbye.
    pub close_grace: std::time::Duration,
    /// A peer that takes no bytes for this long while output is queued is
    /// closed (its idle, handshake and lag limits keep running meanwhile).
    pub write_timeout: std::time::Duration,
    /// A player's bus deliveries are taken at most once per this long and
    /// written together (zero: each as it comes). Fewer, larger writes
    /// for up to this much more latency; see
    /// [`Outbox::merging`](arcly_core::host::Outbox::merging).
    pub merge_writes: std::time::Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            read_chunk: 64 * 1024,
            close_grace: std::time::Duration::from_secs(2),
            write_timeout: WRITE_TIMEOUT,
            merge_writes: std::time::Duration::ZERO,
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
    /// Ended through [`Sessions::end`](crate::Sessions::end).
    Ended,
}

/// Counts what `write` wrote into `sent`.
fn counted(sent: Option<&AtomicU64>, r: io::Result<usize>) -> io::Result<usize> {
    if let (Some(c), Ok(n)) = (sent, &r) {
        c.fetch_add(*n as u64, Ordering::Relaxed);
    }
    r
}

/// Writes what fits without blocking. `Err` when the peer is gone.
fn flush(
    sock: &TcpStream,
    out: &mut Outbox,
    clock: &Clock,
    sent: Option<&AtomicU64>,
) -> io::Result<()> {
    out.flush_with(
        || clock.now(),
        |b| counted(sent, sock.try_write_vectored(b)),
    )
}

/// Takes the conductor's transmits and writes what fits.
fn pump<S: Session>(
    sock: &TcpStream,
    conductor: &mut Conductor<S>,
    out: &mut Outbox,
    clock: &Clock,
    sent: Option<&AtomicU64>,
) -> io::Result<()> {
    out.pump(
        conductor,
        || clock.now(),
        |b| counted(sent, sock.try_write_vectored(b)),
    )
}

/// The UDP sockets a session asked for.
type Owned = OwnedSockets<UdpSocket>;

/// Binds one of a session's own UDP sockets.
fn bind_udp(at: SocketAddr) -> io::Result<(UdpSocket, SocketAddr)> {
    let s = std::net::UdpSocket::bind(at)?;
    s.set_nonblocking(true)?;
    let s = UdpSocket::from_std(s)?;
    let addr = s.local_addr()?;
    Ok((s, addr))
}

/// Writes everything queued, waiting for the socket as needed.
async fn write_out(
    sock: &TcpStream,
    out: &mut Outbox,
    clock: &Clock,
    sent: Option<&AtomicU64>,
) -> io::Result<()> {
    while !out.is_empty() {
        flush(sock, out, clock, sent)?;
        if !out.is_empty() {
            sock.writable().await?;
        }
    }
    Ok(())
}

/// Runs `conductor` over `sock` until the session closes, the peer goes
/// away, or `shutdown` fires. Log lines are handed to `log`.
///
/// The rules are [`arcly_core::host`]'s: output is written as it fits and a
/// peer that takes nothing for `write_timeout` is closed; the socket is read
/// only while little is queued for the peer and the session wants input;
/// bus deliveries are taken only when everything before them was written, so
/// a slow reader lags on the bus (and resumes at a key frame) instead of
/// growing a buffer, and never slows another connection.
pub async fn drive_stream<S: Session>(
    sock: TcpStream,
    conductor: Conductor<S>,
    clock: Clock,
    shutdown: ShutdownSignal,
    cfg: DriverConfig,
    log: &(dyn Fn(String) + Send + Sync),
) -> io::Result<()> {
    drive_tracked(sock, conductor, clock, shutdown, cfg, log, None, ()).await
}

/// [`drive_stream`], keeping `tracked` (a connection in
/// [`Sessions`](crate::Sessions)) up to date and ending when it is ended;
/// `keep` is dropped with the future (a listener's counts and slots).
///
/// A function returning an `async move` block rather than an `async fn`:
/// the block keeps what it captures once, where an async function keeps its
/// arguments twice (as arguments and as the locals they become), in every
/// connection's task.
// An async fn here is what the doc comment says to avoid.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
pub(crate) fn drive_tracked<S: Session, L, K>(
    sock: TcpStream,
    mut conductor: Conductor<S>,
    clock: Clock,
    shutdown: ShutdownSignal,
    cfg: DriverConfig,
    log: L,
    tracked: Option<Arc<Tracked>>,
    keep: K,
) -> impl Future<Output = io::Result<()>>
where
    L: std::ops::Deref,
    L::Target: Fn(String),
{
    async move {
        let _keep = &keep;
        let sent = tracked.as_deref().map(|t| &t.bytes_out);
        let mut ended = pin!(async {
            match tracked.as_deref() {
                Some(t) => t.end.notified().await,
                None => std::future::pending().await,
            }
        });
        // What the connection publishes or plays, as last told to `tracked`.
        let mut shown: Option<(StreamKey, Action)> = None;
        sock.set_nodelay(true)?;
        // Grows with the peer's rate: an idle or slow connection reads on the
        // stack and holds nothing, a publisher's buffer doubles up to
        // `read_chunk`.
        let mut rbuf = BytesMut::new();
        let mut want = SMALL_READ.min(cfg.read_chunk);
        let mut out = Outbox::merging(cfg.merge_writes);
        let mut shutdown = pin!(shutdown.wait());
        let mut sleep = pin!(tokio::time::sleep(std::time::Duration::from_secs(3600)));
        let mut eof = false;
        // The session's own UDP sockets (RTSP's RTP/RTCP pairs), bound on the
        // interface of this connection when it asks, and a buffer to read them.
        let ip = sock.local_addr()?.ip();
        let mut owned = Owned::new();
        let mut dbuf: Vec<u8> = Vec::new();
        loop {
            loop {
                if let Err(e) = pump(&sock, &mut conductor, &mut out, &clock, sent) {
                    conductor.handle_input(clock.now(), Input::Eof);
                    while let Some(line) = conductor.poll_log() {
                        log(line);
                    }
                    return Err(e);
                }
                owned.send(&mut out, |u, data, to| {
                    let _ = u.try_send_to(data, to);
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
            if let Some(t) = tracked.as_deref() {
                let now = conductor.stream().map(|(k, a)| (k.clone(), a));
                if now != shown {
                    t.set_stream(now.as_ref().map(|(k, a)| (k.to_string(), a.as_str())));
                    shown = now;
                }
            }
            if out.finished(&conductor, eof) {
                let mut sock = sock;
                let _ = sock.shutdown().await;
                return Ok(());
            }
            if !out.is_empty() {
                conductor.check_lag(clock.now());
            }
            let deadline = out.next_wake(&conductor, cfg.write_timeout);
            if let Some(t) = deadline {
                sleep.as_mut().reset(clock.to_tokio(t));
            }
            let read = out.may_read(&conductor, eof);
            let wake = poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                if ended.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Ended);
                }
                if !out.is_empty() && sock.poll_write_ready(cx).is_ready() {
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
                    let mut rb = ReadBuf::new(&mut dbuf);
                    if let Poll::Ready(Ok(from)) = u.poll_recv_from(cx, &mut rb) {
                        return Poll::Ready(Wake::Datagram(
                            BytesMut::from(rb.filled()),
                            *local,
                            from,
                        ));
                    }
                }
                if read {
                    while sock.poll_read_ready(cx).is_ready() {
                        if want <= SMALL_READ && rbuf.is_empty() {
                            // A quiet peer (a player sends an acknowledgement
                            // now and then): read on the stack and keep only what
                            // came, so thousands of players hold no read buffer.
                            let mut small = [0u8; SMALL_READ];
                            match sock.try_read(&mut small[..want]) {
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                                Ok(0) => return Poll::Ready(Wake::Read(Ok(0))),
                                Ok(n) => {
                                    if n == want {
                                        want = (want * 2).min(cfg.read_chunk);
                                    }
                                    return Poll::Ready(Wake::Small(BytesMut::from(&small[..n])));
                                }
                                Err(e) => return Poll::Ready(Wake::Read(Err(e))),
                            }
                        }
                        if rbuf.capacity() - rbuf.len() < want / 4 {
                            rbuf.reserve(want);
                        }
                        let room = rbuf.capacity() - rbuf.len();
                        match sock.try_read_buf(&mut rbuf) {
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
                if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
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
                Wake::Read(Ok(n)) => {
                    if let Some(t) = tracked.as_deref() {
                        t.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    let data = rbuf.split();
                    conductor.handle_input(clock.now(), Input::Stream(data));
                }
                Wake::Small(data) => {
                    if let Some(t) = tracked.as_deref() {
                        t.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    conductor.handle_input(clock.now(), Input::Stream(data))
                }
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
                        return Ok(());
                    }
                    conductor.handle_timeout(now);
                }
                Wake::Shutdown | Wake::Ended => {
                    let why = if matches!(wake, Wake::Ended) {
                        CloseReason::Ended
                    } else {
                        CloseReason::Shutdown
                    };
                    conductor.close(clock.now(), why);
                    let mut sock = sock;
                    let goodbye = async {
                        while out.fill(&mut conductor, clock.now()) {
                            write_out(&sock, &mut out, &clock, sent).await?;
                        }
                        write_out(&sock, &mut out, &clock, sent).await?;
                        sock.shutdown().await
                    };
                    // Boxed: only a closing connection needs this state, and the
                    // future of every open one would otherwise hold room for it.
                    let _ = Box::pin(tokio::time::timeout(cfg.close_grace, goodbye)).await;
                    while let Some(line) = conductor.poll_log() {
                        log(line);
                    }
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_core::engine::Engine;
    use arcly_core::session::ConnContext;
    use arcly_core::sim::toy::Inert;

    #[tokio::test]
    async fn a_connections_task_keeps_its_state_once() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (sock, _) = l.accept().await.unwrap();
        let conductor = Conductor::new(Engine::default(), Inert, ConnContext::default());
        let log = |_: String| {};
        let drive = drive_tracked(
            sock,
            conductor,
            Clock::new(),
            crate::Shutdown::new().signal(),
            DriverConfig::default(),
            &log,
            None,
            (),
        );
        // Every player's task holds this future: 960 bytes here when this
        // was written (1,016 in the listener's release build, with its
        // counts and slots); as an async fn, which keeps its arguments
        // twice, it took about 150 more.
        let n = std::mem::size_of_val(&drive);
        assert!(n <= 1_024, "a connection's future is {n} bytes");
    }
}
