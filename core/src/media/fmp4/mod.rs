//! Fragmented MP4 / CMAF (ISO/IEC 14496-12 §8.8 movie fragments, ISO/IEC
//! 23000-19 CMAF): the initialization segment ([`init_segment`]) and the
//! media segments and LL-HLS parts ([`Fmp4Muxer`]).

mod boxes;
pub mod fragment;
pub mod init;

pub use fragment::{Fmp4Config, Fmp4Error, Fmp4Muxer, Fragment};
pub use init::init_segment;

use crate::frame::{CodecId, TrackInfo, TrackParams};
use crate::time::Timescale;

/// The `track_ID` of a track in the MP4 files written here: its id plus one
/// (`track_ID` 0 is reserved, ISO/IEC 14496-12 §8.3.2.3).
pub fn mp4_track_id(t: &TrackInfo) -> u32 {
    u32::from(t.id.0) + 1
}

/// The timescale a track's media uses in MP4: the sample rate for audio
/// (48 kHz for Opus), the track's own timescale for video.
pub fn mp4_timescale(t: &TrackInfo) -> Timescale {
    if t.codec == CodecId::Opus {
        return Timescale::new(48_000).unwrap_or(t.timescale);
    }
    if t.codec.is_audio() {
        if let Some(ts) = Timescale::new(params_of(t).sample_rate) {
            return ts;
        }
    }
    t.timescale
}

/// The track's parameters: those it carries, or else parsed from its
/// configuration.
pub fn params_of_track(t: &TrackInfo) -> TrackParams {
    params_of(t)
}

pub(crate) fn params_of(t: &TrackInfo) -> TrackParams {
    let known = if t.codec.is_video() {
        t.params.width != 0
    } else {
        t.params.sample_rate != 0
    };
    if known {
        return t.params.clone();
    }
    crate::media::codec::track_params(t.codec, &t.config).unwrap_or_else(|_| t.params.clone())
}
