//! From the kernel's tracks and frames to FLV tags on a message stream: what
//! a playing server session and a publishing client session send.
//!
//! The tags are core's ([`arcly_core::media::flv`], where the rules for
//! metadata, sequence headers, rebased time stamps and a configuration
//! change mid-stream are written down), shared with HTTP-FLV; here each tag
//! becomes an RTMP message of its type. ffmpeg's FLV demuxer does not change
//! the codec of a stream it has opened ("Changing the codec id midstream"):
//! an ffmpeg 9 player of a stream that goes from H.264 to H.265 keeps
//! playing the audio and drops the new video, and ffmpeg 5.1, which
//! predates enhanced RTMP, loses both; such a player has to play again.

use crate::connection::Connection;
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::flv::FlvMux;
use std::sync::Arc;

/// The muxing state of one outgoing stream: core's [`FlvMux`], whose tags
/// go out as RTMP messages.
#[derive(Debug, Default)]
pub struct Egress {
    mux: FlvMux,
}

impl Egress {
    /// Sends metadata and sequence headers for `tracks` (see the module
    /// docs for a change mid-stream). `set_data_frame` prefixes the
    /// metadata with `@setDataFrame` (what a publisher sends).
    pub fn tracks(
        &mut self,
        tracks: &Arc<TrackSet>,
        conn: &mut Connection,
        stream_id: u32,
        set_data_frame: bool,
    ) {
        self.mux
            .tracks(tracks, set_data_frame, |tag| conn.send_tag(stream_id, &tag));
    }

    /// Sends a frame.
    pub fn frame(&mut self, f: &MediaFrame, conn: &mut Connection, stream_id: u32) {
        if let Some(tag) = self.mux.frame(f) {
            conn.send_frame_tag(stream_id, &tag, &f.wire);
        }
    }

    /// Skips video until the next key frame (after a pause).
    pub fn wait_for_key_frame(&mut self) {
        self.mux.need_key = true;
    }

    /// Frames sent.
    pub fn frames(&self) -> u64 {
        self.mux.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RtmpConfig;
    use crate::handshake::Handshake;
    use arcly_core::frame::{CodecId, TrackId, TrackInfo};
    use arcly_core::time::MediaTime;
    use bytes::Bytes;

    // The muxing rules are core's (`arcly_core::media::flv`, tested there);
    // what players receive byte for byte is `tests/golden.rs`. Here: tags
    // become messages only once the tracks are known.
    #[test]
    fn frames_go_out_only_after_the_tracks() {
        let mut conn = Connection::new(RtmpConfig::default(), Handshake::server(0));
        let mut set = TrackSet::new();
        set.upsert(TrackInfo::new(
            TrackId(0),
            CodecId::H264,
            arcly_core::time::Timescale::MILLIS,
            Bytes::from_static(b"cfg"),
        ))
        .unwrap();
        let key = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            true,
            MediaTime::from_millis(5000),
            Bytes::from_static(b"x"),
        );
        let mut e = Egress::default();
        e.frame(&key, &mut conn, 1);
        assert!(conn.take_output().is_none());
        e.tracks(&Arc::new(set), &mut conn, 1, false);
        assert!(conn.take_output().is_some());
        e.frame(&key, &mut conn, 1);
        assert!(conn.take_output().is_some());
        assert_eq!(e.frames(), 1);
        e.wait_for_key_frame();
        e.frame(&key, &mut conn, 1);
        assert_eq!(e.frames(), 2);
    }
}
