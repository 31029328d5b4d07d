//! A sans-IO HTTP-FLV player: what flv.js or ffmpeg does with
//! `http://HOST/APP/STREAM.flv`, for load testing any HTTP-FLV server
//! (`arcly bench`).
//!
//! [`FlvClient`] sends one `GET`, reads the response head, then the body as
//! it comes (chunked, or until the server closes), through core's
//! [`FlvFileReader`], and reports each audio and video tag: its size and,
//! for video, whether it is a key frame. Bodies are counted, never kept;
//! the head and each tag are bounded.
//!
//! The host connects, writes [`poll_transmit`](FlvClient::poll_transmit),
//! feeds what it reads to [`handle_input`](FlvClient::handle_input) (and
//! [`handle_eof`](FlvClient::handle_eof) when the server closes), calls
//! [`handle_timeout`](FlvClient::handle_timeout) at
//! [`poll_timeout`](FlvClient::poll_timeout), and reads
//! [`poll_event`](FlvClient::poll_event).

use crate::client::{parse_response_head, Chunk, ClientError, Dechunker, Framing};
use arcly_core::media::flv::{FlvFileReader, TagKind};
use arcly_core::time::Instant;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Duration;

/// The largest tag taken.
pub const MAX_TAG: usize = 16 << 20;

/// What an [`FlvClient`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FlvEvent {
    /// An audio or video tag arrived.
    Media {
        /// Whether it is video.
        video: bool,
        /// A video key frame (or sequence header).
        key: bool,
        /// The size of its body.
        bytes: usize,
    },
    /// The server ended the stream (the last chunk, or a close after the
    /// head).
    Ended,
    /// The client stopped on an error: a status other than 200, bytes that
    /// are not chunked FLV, a time-out before the head.
    Failed(ClientError),
}

#[derive(Debug)]
enum Body {
    Chunked(Dechunker),
    Close,
}

/// One HTTP-FLV player on one connection.
#[derive(Debug)]
pub struct FlvClient {
    path: String,
    input: BytesMut,
    output: VecDeque<Bytes>,
    events: VecDeque<FlvEvent>,
    body: Option<Body>,
    reader: FlvFileReader,
    sent: Instant,
    head_timeout: Duration,
    done: bool,
}

impl FlvClient {
    /// A player of `path` (`/live/cam.flv`) on a server known as `host`;
    /// a server that sends no head within `head_timeout` fails it.
    pub fn new(host: &str, path: &str, head_timeout: Duration, now: Instant) -> Self {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: arcly-bench\r\nAccept: */*\r\n\r\n"
        );
        FlvClient {
            path: path.to_string(),
            input: BytesMut::new(),
            output: VecDeque::from([Bytes::from(req)]),
            events: VecDeque::new(),
            body: None,
            reader: FlvFileReader::new(MAX_TAG),
            sent: now,
            head_timeout,
            done: false,
        }
    }

    /// Bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.output.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<FlvEvent> {
        self.events.pop_front()
    }

    /// Whether the play is over (ended or failed).
    pub fn is_closed(&self) -> bool {
        self.done
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: only while the
    /// head is awaited.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done && self.body.is_none()).then(|| self.sent + self.head_timeout)
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.done && self.body.is_none() && now >= self.sent + self.head_timeout {
            self.fail(ClientError::Timeout(self.path.clone()));
        }
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self) {
        if self.done {
            return;
        }
        if self.body.is_some() {
            self.end();
        } else {
            self.fail(ClientError::Closed);
        }
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, data: &[u8]) {
        if self.done {
            return;
        }
        self.input.extend_from_slice(data);
        if let Err(e) = self.step() {
            self.fail(e);
        }
    }

    fn step(&mut self) -> Result<(), ClientError> {
        if self.body.is_none() {
            let Some((head, len)) = parse_response_head(&self.input, false)? else {
                return Ok(());
            };
            self.input.advance(len);
            if head.status != 200 {
                return Err(ClientError::Status {
                    status: head.status,
                    path: self.path.clone(),
                });
            }
            self.body = Some(match head.framing {
                Framing::Chunked => Body::Chunked(Dechunker::default()),
                // A live stream has no length; a server that gives one
                // ends there, which the reader sees as the stream's end.
                Framing::Close | Framing::Length(_) => Body::Close,
            });
        }
        loop {
            match &mut self.body {
                Some(Body::Chunked(d)) => match d.step(&mut self.input, 0, u64::MAX)? {
                    Chunk::Data(n) => {
                        self.reader.push(&self.input[..n]);
                        self.input.advance(n);
                        self.tags()?;
                    }
                    Chunk::Framing => {}
                    Chunk::More => return Ok(()),
                    Chunk::End => {
                        self.end();
                        return Ok(());
                    }
                },
                Some(Body::Close) => {
                    self.reader.push(&self.input);
                    self.input.clear();
                    return self.tags();
                }
                None => return Ok(()),
            }
        }
    }

    /// Reports the whole tags read so far.
    fn tags(&mut self) -> Result<(), ClientError> {
        while let Some(tag) = self
            .reader
            .next_tag()
            .map_err(|e| ClientError::Malformed(e.to_string()))?
        {
            let video = match tag.kind {
                TagKind::Video => true,
                TagKind::Audio => false,
                _ => continue,
            };
            // Legacy and enhanced video tags both keep the frame type in
            // bits 4-6 of the first byte: 1 is a key frame.
            let key = video && tag.body.first().is_some_and(|b| (b >> 4) & 7 == 1);
            self.events.push_back(FlvEvent::Media {
                video,
                key,
                bytes: tag.body.len(),
            });
        }
        Ok(())
    }

    fn end(&mut self) {
        self.done = true;
        self.events.push_back(FlvEvent::Ended);
    }

    fn fail(&mut self, e: ClientError) {
        self.done = true;
        self.events.push_back(FlvEvent::Failed(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(c: &mut FlvClient) -> Vec<FlvEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// The gateway's own answer, recorded with flv.js as the player, read
    /// in pieces of every size: the same tags each time, the first video a
    /// key frame.
    #[test]
    fn reads_the_gateways_recorded_answer_at_any_split() {
        let s2c = include_bytes!("../testdata/flvjs_flv.s2c");
        let mut whole = None;
        for step in [1, 7, 100, 4096, s2c.len()] {
            let mut c = FlvClient::new("x", "/live/cap.flv", Duration::from_secs(5), Instant::ZERO);
            let req = c.poll_transmit().unwrap();
            assert!(req.starts_with(b"GET /live/cap.flv HTTP/1.1\r\nHost: x\r\n"));
            let mut got = Vec::new();
            for piece in s2c.chunks(step) {
                c.handle_input(piece);
                got.extend(events(&mut c));
            }
            assert!(!c.is_closed());
            let first_video = got.iter().find_map(|e| match e {
                FlvEvent::Media {
                    video: true, key, ..
                } => Some(*key),
                _ => None,
            });
            assert_eq!(first_video, Some(true));
            assert!(got.len() > 100, "{} tags", got.len());
            match &whole {
                None => whole = Some(got),
                Some(w) => assert_eq!(w, &got, "split {step}"),
            }
        }
    }

    #[test]
    fn the_last_chunk_ends_it_and_errors_fail_it() {
        let mut c = FlvClient::new("x", "/a.flv", Duration::from_secs(5), Instant::ZERO);
        let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let file = b"FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x00";
        body.extend_from_slice(format!("{:x}\r\n", file.len()).as_bytes());
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        c.handle_input(&body);
        assert_eq!(events(&mut c), [FlvEvent::Ended]);
        assert!(c.is_closed());

        let mut c = FlvClient::new("x", "/a.flv", Duration::from_secs(5), Instant::ZERO);
        c.handle_input(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(
            events(&mut c)[..],
            [FlvEvent::Failed(ClientError::Status { status: 404, .. })]
        ));

        let mut c = FlvClient::new("x", "/a.flv", Duration::from_secs(5), Instant::ZERO);
        c.handle_input(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nMP4 is not FLV");
        assert!(matches!(
            events(&mut c)[..],
            [FlvEvent::Failed(ClientError::Malformed(_))]
        ));

        let mut c = FlvClient::new("x", "/a.flv", Duration::from_secs(5), Instant::ZERO);
        assert_eq!(c.poll_timeout(), Some(Instant::from_millis(5000)));
        c.handle_timeout(Instant::from_millis(5000));
        assert!(matches!(
            events(&mut c)[..],
            [FlvEvent::Failed(ClientError::Timeout(_))]
        ));
        // A close after the head is the end of the stream.
        let mut c = FlvClient::new("x", "/a.flv", Duration::from_secs(5), Instant::ZERO);
        c.handle_input(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nFLV");
        c.handle_eof();
        assert_eq!(events(&mut c), [FlvEvent::Ended]);
    }
}
