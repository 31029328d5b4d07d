//! HTTP-FLV play: `GET /APP/STREAM.flv` answered with the live stream as an
//! FLV file of unknown length, in chunks (`Transfer-Encoding: chunked`), the
//! way flv.js, ffmpeg and the CDNs that speak HTTP-FLV read it.
//!
//! The session raises a play request to its host exactly as an RTMP `play`
//! does (so authorization, player limits and stats are the engine's), and
//! answers it once the host decides: `200` then the stream, or the status
//! of the refusal. The tags are core's [`FlvMux`], the same ones an RTMP
//! player gets; each tag is one HTTP chunk whose payload is the frame's own
//! `Bytes`, written beside its few header bytes and never copied.
//!
//! The FLV header's audio and video flags are set from the first track set
//! (the bus sends it before any frame), since flv.js waits for every track
//! the header announces.

use crate::message::{Method, Request, Response};
use arcly_core::frame::TrackSet;
use arcly_core::media::flv::{file_header, file_tag_head, previous_tag_size, FlvMux, Tag};
use arcly_core::session::{Rejection, RequestId};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;

/// A payload at most this long is copied into its chunk's header buffer
/// (one write instead of three); a longer one is written as its own buffer.
const INLINE_PAYLOAD: usize = 512;

/// The end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The application and stream of an HTTP-FLV path, `/APP/STREAM.flv`
/// (exactly two segments, both non-empty); `None` for any other path.
pub(crate) fn flv_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?.strip_suffix(".flv")?;
    let (app, stream) = rest.split_once('/')?;
    (!app.is_empty() && !stream.is_empty() && !stream.contains('/')).then_some((app, stream))
}

/// One HTTP-FLV play on a connection, from its request to its end.
pub(crate) struct FlvPlay {
    /// The request, answered once the host decides.
    pub req: Request,
    /// The id of the play request raised for it.
    pub id: RequestId,
    /// The host accepted it and the head was sent.
    pub playing: bool,
    header_sent: bool,
    mux: FlvMux,
}

impl FlvPlay {
    pub fn new(req: Request, id: RequestId) -> Self {
        FlvPlay {
            req,
            id,
            playing: false,
            header_sent: false,
            mux: FlvMux::new(),
        }
    }

    /// `HEAD`: the head only, no stream.
    pub fn head_only(&self) -> bool {
        self.req.method == Method::Head
    }

    /// The answer's head once accepted.
    pub fn response() -> Response {
        Response::new(200, "video/x-flv", Bytes::new())
            .with_header("Cache-Control", "no-cache, no-store")
    }

    /// The answer to a refusal.
    pub fn refusal(why: &Rejection) -> Response {
        crate::router::refusal(why, &why.to_string())
    }

    /// The chunks for a track set: the FLV header first time, then the
    /// metadata and sequence headers.
    pub fn tracks(&mut self, tracks: &Arc<TrackSet>, out: &mut impl FnMut(Bytes)) {
        if !self.header_sent {
            self.header_sent = true;
            let h = file_header(tracks.video().is_some(), tracks.audio().is_some());
            out(chunk_of(&h));
        }
        let mut tags = Vec::with_capacity(3);
        self.mux.tracks(tracks, false, |t| tags.push(t));
        for t in &tags {
            tag_chunks(t, out);
        }
    }

    /// The chunks of a frame, if FLV carries it now.
    pub fn frame(&mut self, f: &arcly_core::frame::MediaFrame, out: &mut impl FnMut(Bytes)) {
        if !self.header_sent {
            return;
        }
        if let Some(t) = self.mux.frame(f) {
            tag_chunks(&t, out);
        }
    }

    /// Frames sent.
    pub fn frames(&self) -> u64 {
        self.mux.frames
    }
}

/// `data` as one chunk.
fn chunk_of(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    b.put_slice(data);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// One tag as one chunk: its size line, the tag header and head, the
/// payload, the `PreviousTagSize` and the chunk's end.
fn tag_chunks(t: &Tag, out: &mut impl FnMut(Bytes)) {
    let head = file_tag_head(t);
    let size = head.len() + t.payload.len() + 4;
    let mut b = BytesMut::with_capacity(head.len() + 16 + t.payload.len().min(INLINE_PAYLOAD));
    b.put_slice(format!("{size:x}\r\n").as_bytes());
    b.put_slice(&head);
    let trailer = previous_tag_size(t);
    if t.payload.len() <= INLINE_PAYLOAD {
        b.put_slice(&t.payload);
        b.put_slice(&trailer);
        b.put_slice(b"\r\n");
        out(b.freeze());
    } else {
        out(b.freeze());
        out(t.payload.clone());
        let mut end = BytesMut::with_capacity(6);
        end.put_slice(&trailer);
        end.put_slice(b"\r\n");
        out(end.freeze());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_segment_flv_paths_are_plays() {
        assert_eq!(flv_path("/live/cam.flv"), Some(("live", "cam")));
        assert_eq!(flv_path("/live/cam"), None);
        assert_eq!(flv_path("/live/.flv"), None);
        assert_eq!(flv_path("//cam.flv"), None);
        assert_eq!(flv_path("/cam.flv"), None);
        assert_eq!(flv_path("/live/cam/x.flv"), None);
    }
}
