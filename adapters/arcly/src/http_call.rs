//! One blocking HTTP/1.1 exchange with a service of the operator's (the
//! auth callback, a JWKS), within a time-out: connect, send the request,
//! read the answer's head (bounded by arcly-http's parser) and, when asked,
//! its body (bounded, any framing, through `arcly_http::client`).

use arcly_http::client::{parse_response_head, response_body, ClientError};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What went wrong, in words that complete "… did not answer: " or
/// "… could not be fetched: ".
#[derive(Debug)]
pub enum CallError {
    /// Connecting, sending or reading failed, or the answer was malformed
    /// or late.
    Failed(String),
    /// The body is larger than the limit given.
    TooLarge,
}

/// An answer: its status, and its body when one was asked for.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (empty when none was asked for).
    pub body: Vec<u8>,
}

/// Runs `f`, which blocks; inside a multi-thread tokio runtime the worker
/// hands its other tasks on while it waits.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Sends `request` (head and body) to `host:port` and reads the answer's
/// head, and its body when `body_limit` is given, all within `timeout`.
pub fn call(
    host: &str,
    port: u16,
    request: &[u8],
    timeout: Duration,
    body_limit: Option<usize>,
) -> Result<Answer, CallError> {
    let failed = |e: &dyn std::fmt::Display| CallError::Failed(e.to_string());
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| failed(&e))?
        .next()
        .ok_or_else(|| failed(&"no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| failed(&e))?;
    s.set_write_timeout(Some(left())).map_err(|e| failed(&e))?;
    s.write_all(request).map_err(|e| failed(&e))?;
    let mut got = Vec::with_capacity(4096);
    let mut buf = [0u8; 8192];
    let mut eof = false;
    loop {
        if let Some((head, len)) = parse_response_head(&got, false).map_err(|e| failed(&e))? {
            let Some(limit) = body_limit else {
                return Ok(Answer {
                    status: head.status,
                    body: Vec::new(),
                });
            };
            match response_body(&got[len..], head.framing, limit, eof) {
                Ok(Some(body)) => {
                    return Ok(Answer {
                        status: head.status,
                        body,
                    })
                }
                Ok(None) => {}
                Err(ClientError::BodyTooLarge(_)) => return Err(CallError::TooLarge),
                Err(ClientError::Closed) => {
                    return Err(failed(&"it closed before the end of its answer"))
                }
                Err(e) => return Err(failed(&e)),
            }
            // A chunked body's framing takes room too, but not as much
            // again as the body.
            if got.len() - len > 2 * limit + 1024 {
                return Err(CallError::TooLarge);
            }
        }
        if eof {
            return Err(failed(&"it closed before answering"));
        }
        if Instant::now() >= deadline {
            return Err(failed(&"timed out"));
        }
        s.set_read_timeout(Some(left())).map_err(|e| failed(&e))?;
        match s.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(failed(&e)),
        }
    }
}
