//! Where a transcoder plugs in: a player whose protocol cannot carry the
//! stream's audio codec (WebRTC takes Opus, an RTMP camera sends AAC) gets
//! the audio through an [`AudioTranscoder`] when its host has one.
//!
//! The kernel has no codec of its own: an implementation (a library, or a
//! process fed through pipes) lives with the host and is handed to the
//! protocol as a [`TranscoderFactory`]. The contract is sans-IO like the
//! rest: frames in, frames out when ready; a transcoder that works on
//! another thread hands out what it finished at the next call.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use crate::frame::{CodecId, MediaFrame, TrackInfo};

/// Turns one audio track's frames into another codec's.
pub trait AudioTranscoder: Send {
    /// Starts on `input`: the output track (codec, timescale and
    /// configuration, e.g. an `OpusHead`), or why it cannot take it.
    fn start(&mut self, input: &TrackInfo) -> Result<TrackInfo, TranscodeError>;

    /// One frame of the input track, in order.
    fn push(&mut self, frame: &MediaFrame) -> Result<(), TranscodeError>;

    /// The next output frame, when one is ready; times are on the output
    /// track's timescale, from the same origin as the input's.
    fn poll(&mut self) -> Option<MediaFrame>;
}

/// A hardware encoder and decoder family (NVENC, Quick Sync, VAAPI, AMF,
/// ...) a host found, so a transcoder can pick one. The host registers
/// what it detected; the kernel runs no codec itself.
pub trait HwAccelBackend: Send + Sync {
    /// The backend's name (`"nvenc"`, `"qsv"`, ...).
    fn id(&self) -> &'static str;

    /// Whether it works on this machine (a test encode succeeded, not only
    /// a name in a list).
    fn is_available(&self) -> bool;

    /// The codecs it encodes.
    fn supported_encoders(&self) -> &[CodecId];

    /// The codecs it decodes.
    fn supported_decoders(&self) -> &[CodecId];
}

/// Why a transcoder could not start or go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transcoding failed: {0}")]
pub struct TranscodeError(pub String);

/// Makes a transcoder from one codec to another for each player that
/// needs one; `None` when it has none for the pair.
#[derive(Clone)]
pub struct TranscoderFactory(
    #[allow(clippy::type_complexity)]
    pub  Arc<dyn Fn(CodecId, CodecId) -> Option<Box<dyn AudioTranscoder>> + Send + Sync>,
);

impl TranscoderFactory {
    /// A transcoder from `from` to `to`, if the host has one.
    pub fn make(&self, from: CodecId, to: CodecId) -> Option<Box<dyn AudioTranscoder>> {
        (self.0)(from, to)
    }
}

impl core::fmt::Debug for TranscoderFactory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TranscoderFactory")
    }
}
