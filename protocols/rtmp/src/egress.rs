//! From the kernel's tracks and frames to FLV tags on a message stream: what
//! a playing server session and a publishing client session send.
//!
//! Tracks become `onMetaData` and sequence headers (always before frames);
//! frames become legacy tags for H.264, AAC and MP3 and enhanced tags for
//! the rest. Timestamps are rebased so each receiver starts near 0.
//!
//! # A configuration change mid-stream
//!
//! A new track set (the publisher changed its parameter sets, or a publisher
//! came back on a lingering stream, see the engine's linger) is sent the
//! same way as the first one: `onMetaData`, then a new sequence header (a
//! tag with `AVCPacketType`/`AACPacketType` 0 for H.264 and AAC, FLV
//! specification 10.1 annex E.4.2/E.4.3; `PacketTypeSequenceStart` in
//! enhanced RTMP for the others), at the time stamp of the last frame sent,
//! so time never goes back; when the video configuration changed, video
//! waits for a key frame. That is how FLV carries a change of decoder
//! configuration, and what ffmpeg's FLV demuxer reads mid-stream: it hands
//! the new header to the decoder as new extradata with the next packet.
//!
//! A change of *codec* (H.264 to H.265, AAC to Opus) is sent the same way,
//! since each FLV tag names its codec and nothing else in FLV announces a
//! change; but players differ. ffmpeg's FLV demuxer does not change the
//! codec of a stream it has opened ("Changing the codec id midstream"): an
//! ffmpeg 9 player keeps playing the audio and drops the new video, and
//! ffmpeg 5.1, which predates enhanced RTMP, loses both. Such a player has
//! to play the stream again to pick up the new codec.

use crate::amf0::{self, Amf0Value};
use crate::connection::Connection;
use crate::flv;
use arcly_core::frame::{CodecId, MediaFrame, TrackSet};
use std::sync::Arc;

/// The muxing state of one outgoing stream.
#[derive(Debug, Default)]
pub struct Egress {
    base: Option<i64>,
    last_ts: u32,
    // Shared with the bus: a player holds a pointer, not a copy.
    tracks: Option<Arc<TrackSet>>,
    /// After a pause: skip video until a key frame.
    pub need_key: bool,
    /// Frames sent.
    pub frames: u64,
}

/// The `videocodecid` / `audiocodecid` metadata value of a codec: the FLV id
/// for legacy codecs, the FourCC as a number for enhanced ones.
fn codec_number(c: CodecId) -> f64 {
    match c {
        CodecId::H264 => 7.0,
        CodecId::Aac => 10.0,
        CodecId::Mp3 => 2.0,
        c => f64::from(u32::from_be_bytes(*flv::fourcc(c))),
    }
}

/// `onMetaData` describing a track set.
pub fn metadata_for(tracks: &TrackSet) -> Amf0Value {
    let mut props = Vec::new();
    if let Some(v) = tracks.video() {
        if v.params.width > 0 {
            props.push((
                "width".to_owned(),
                Amf0Value::Number(f64::from(v.params.width)),
            ));
            props.push((
                "height".to_owned(),
                Amf0Value::Number(f64::from(v.params.height)),
            ));
        }
        props.push((
            "videocodecid".to_owned(),
            Amf0Value::Number(codec_number(v.codec)),
        ));
    }
    if let Some(a) = tracks.audio() {
        props.push((
            "audiocodecid".to_owned(),
            Amf0Value::Number(codec_number(a.codec)),
        ));
        if a.params.sample_rate > 0 {
            props.push((
                "audiosamplerate".to_owned(),
                Amf0Value::Number(f64::from(a.params.sample_rate)),
            ));
        }
        if a.params.channels > 0 {
            props.push((
                "audiochannels".to_owned(),
                Amf0Value::Number(f64::from(a.params.channels)),
            ));
        }
    }
    Amf0Value::EcmaArray(props)
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
        let mut data = Vec::with_capacity(3);
        if set_data_frame {
            data.push(amf0::string("@setDataFrame"));
        }
        data.push(amf0::string("onMetaData"));
        data.push(metadata_for(tracks));
        conn.send_data(stream_id, self.last_ts, data);
        // RTMP carries one video and one audio track: the first of each.
        for t in [tracks.video(), tracks.audio()].into_iter().flatten() {
            if let Some(head) = flv::sequence_header(t) {
                conn.send_media(
                    t.codec.is_video(),
                    stream_id,
                    self.last_ts,
                    &head,
                    &t.config,
                );
            }
        }
        let video_changed = match (&self.tracks, tracks.video()) {
            (Some(old), Some(new)) => old
                .video()
                .is_none_or(|v| v.codec != new.codec || v.config != new.config),
            _ => false,
        };
        if video_changed && self.frames > 0 {
            // A decoder given a new configuration starts again at a key frame.
            self.need_key = true;
        }
        self.tracks = Some(Arc::clone(tracks));
    }

    /// Sends a frame.
    pub fn frame(&mut self, f: &MediaFrame, conn: &mut Connection, stream_id: u32) {
        let Some(tracks) = &self.tracks else {
            return;
        };
        let carried = if f.codec.is_video() {
            tracks.video()
        } else {
            tracks.audio()
        };
        if carried.map(|t| t.id) != Some(f.track) {
            return;
        }
        if self.need_key && f.codec.is_video() {
            if !f.is_key() {
                return;
            }
            self.need_key = false;
        }
        let dts = f.dts.as_millis();
        let base = *self.base.get_or_insert(dts);
        // Audio packed with the first key frame may begin a little before
        // it (an RTP sender packs several AAC frames into a packet): it
        // would go out at 0 beside the frame that is really at 0, and
        // players take two frames at one time as an error. It is from
        // before the play's start; drop it.
        if f.codec.is_audio() && dts < base && base - dts <= 1_000 {
            return;
        }
        // RTMP's clock is 32 bits and wraps; truncation is the wire's rule.
        let ts = (dts - base).max(0) as u32;
        let cts = i32::try_from(f.pts.as_millis() - dts).unwrap_or(0);
        let head = flv::frame_head(f, cts);
        conn.send_media(f.codec.is_video(), stream_id, ts, &head, &f.payload);
        self.last_ts = ts;
        self.frames += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RtmpConfig;
    use crate::handshake::Handshake;
    use arcly_core::frame::{TrackId, TrackInfo};
    use arcly_core::time::{MediaTime, Timescale};
    use bytes::Bytes;

    #[test]
    fn one_video_and_one_audio_track_rebased_to_zero() {
        let mut conn = Connection::new(RtmpConfig::default(), Handshake::server(0));
        let mut set = TrackSet::new();
        for (id, codec) in [(0, CodecId::H264), (1, CodecId::Aac), (2, CodecId::H265)] {
            set.upsert(TrackInfo::new(
                TrackId(id),
                codec,
                Timescale::MILLIS,
                Bytes::from_static(b"cfg"),
            ))
            .unwrap();
        }
        let mut e = Egress::default();
        // A frame before the tracks is not sent.
        let f = |id: u8, codec, ms: i64| {
            MediaFrame::video(
                TrackId(id),
                codec,
                true,
                MediaTime::new(ms * 90, Timescale::MPEG),
                Bytes::from_static(b"x"),
            )
        };
        e.frame(&f(0, CodecId::H264, 5000), &mut conn, 1);
        assert!(conn.take_output().is_none());
        e.tracks(&Arc::new(set), &mut conn, 1, false);
        assert!(conn.take_output().is_some());
        e.frame(&f(2, CodecId::H265, 5000), &mut conn, 1);
        assert!(conn.take_output().is_none());
        e.frame(&f(0, CodecId::H264, 5000), &mut conn, 1);
        e.frame(&f(0, CodecId::H264, 5040), &mut conn, 1);
        assert_eq!(e.frames, 2);
        assert_eq!(e.last_ts, 40);
    }

    #[test]
    fn audio_from_just_before_the_first_frame_is_not_sent_at_zero() {
        let mut conn = Connection::new(RtmpConfig::default(), Handshake::server(0));
        let mut set = TrackSet::new();
        for (id, codec) in [(0, CodecId::H264), (1, CodecId::Aac)] {
            set.upsert(TrackInfo::new(
                TrackId(id),
                codec,
                Timescale::MILLIS,
                Bytes::from_static(b"cfg"),
            ))
            .unwrap();
        }
        let mut e = Egress::default();
        e.tracks(&Arc::new(set), &mut conn, 1, false);
        let _ = conn.take_output();
        let audio = |ms: i64| {
            MediaFrame::audio(
                TrackId(1),
                CodecId::Aac,
                MediaTime::from_millis(ms),
                Bytes::from_static(b"a"),
            )
        };
        let key = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            true,
            MediaTime::from_millis(1000),
            Bytes::from_static(b"k"),
        );
        e.frame(&key, &mut conn, 1);
        // Packed with the key frame, from 21 ms before it: not sent.
        e.frame(&audio(979), &mut conn, 1);
        assert_eq!(e.frames, 1);
        e.frame(&audio(1000), &mut conn, 1);
        e.frame(&audio(1021), &mut conn, 1);
        assert_eq!((e.frames, e.last_ts), (3, 21));
    }

    #[test]
    fn a_new_video_configuration_mid_stream_waits_for_a_key_frame() {
        let mut conn = Connection::new(RtmpConfig::default(), Handshake::server(0));
        let set = |config: &'static [u8]| {
            let mut s = TrackSet::new();
            s.upsert(TrackInfo::new(
                TrackId(0),
                CodecId::H264,
                Timescale::MILLIS,
                Bytes::from_static(config),
            ))
            .unwrap();
            Arc::new(s)
        };
        let f = |key: bool, ms: i64| {
            MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                key,
                MediaTime::from_millis(ms),
                Bytes::from_static(b"x"),
            )
        };
        let mut e = Egress::default();
        e.tracks(&set(b"one"), &mut conn, 1, false);
        e.frame(&f(true, 0), &mut conn, 1);
        e.frame(&f(false, 40), &mut conn, 1);
        // The same configuration again (after a lag): nothing to wait for.
        e.tracks(&set(b"one"), &mut conn, 1, false);
        assert!(!e.need_key);
        // A new one: the sequence header goes out, then video from a key frame.
        let _ = conn.take_output();
        e.tracks(&set(b"two"), &mut conn, 1, false);
        assert!(conn.take_output().is_some());
        assert!(e.need_key);
        e.frame(&f(false, 80), &mut conn, 1);
        assert_eq!(e.frames, 2);
        e.frame(&f(true, 120), &mut conn, 1);
        assert_eq!((e.frames, e.last_ts, e.need_key), (3, 120, false));
    }
}
