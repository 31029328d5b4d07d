//! The client-side stream driver: one TCP socket, one client session (an
//! RTMP player or publisher of ours), its events handed to a callback.

use crate::Clock;
use arcly_core::session::{Input, Session, SessionEvent};
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Runs a client `session` over `sock` until it closes, the peer goes away,
/// or `stop` resolves; every event goes to `on_event`.
pub async fn drive_client<S: Session>(
    mut sock: TcpStream,
    mut session: S,
    clock: Clock,
    stop: impl Future<Output = ()>,
    mut on_event: impl FnMut(&S, SessionEvent),
) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let mut rbuf = BytesMut::new();
    let mut stop = pin!(stop);
    let mut sleep = pin!(tokio::time::sleep(std::time::Duration::from_secs(3600)));
    loop {
        while let Some(t) = session.poll_transmit() {
            sock.write_all(&t.data).await?;
        }
        while let Some(ev) = session.poll_event() {
            on_event(&session, ev);
        }
        if session.is_closed() {
            return Ok(());
        }
        let deadline = session.poll_timeout();
        if let Some(t) = deadline {
            sleep.as_mut().reset(clock.to_tokio(t));
        }
        enum Wake {
            Read(io::Result<usize>),
            Timeout,
            Stop,
        }
        let wake = poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Stop);
            }
            while sock.poll_read_ready(cx).is_ready() {
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(64 * 1024);
                }
                match sock.try_read_buf(&mut rbuf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(Wake::Read(r)),
                }
            }
            if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timeout);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                session.handle_input(clock.now(), Input::Eof);
                while let Some(ev) = session.poll_event() {
                    on_event(&session, ev);
                }
                return Ok(());
            }
            Wake::Read(Ok(_)) => session.handle_input(clock.now(), Input::Stream(rbuf.split())),
            Wake::Timeout => session.handle_timeout(clock.now()),
            Wake::Stop => return Ok(()),
        }
    }
}
