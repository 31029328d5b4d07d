//! The multivariant playlist (RFC 8216bis §4.4.6): one `EXT-X-STREAM-INF`
//! per variant with `BANDWIDTH`, `AVERAGE-BANDWIDTH`, `CODECS` (RFC 6381
//! strings computed from the bitstream), `RESOLUTION` and `FRAME-RATE`.

use crate::frame::TrackSet;
use crate::media::fmp4::params_of_track;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// One variant stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// The media playlist's URI.
    pub uri: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    /// Average bits per second, when known.
    pub average_bandwidth: Option<u64>,
    /// Comma-separated RFC 6381 codec strings.
    pub codecs: String,
    /// `(width, height)` of the video, if any.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second, if known.
    pub frame_rate: Option<f64>,
}

impl Variant {
    /// A variant describing these tracks (codecs, resolution and frame rate
    /// from their configuration).
    pub fn for_tracks(
        uri: String,
        tracks: &TrackSet,
        bandwidth: u64,
        average_bandwidth: Option<u64>,
    ) -> Self {
        let mut codecs = String::new();
        let mut resolution = None;
        let mut frame_rate = None;
        for t in tracks.iter() {
            let p = params_of_track(t);
            if !p.codec_string.is_empty() {
                if !codecs.is_empty() {
                    codecs.push(',');
                }
                codecs.push_str(&p.codec_string);
            }
            if t.codec.is_video() && resolution.is_none() && p.width > 0 {
                resolution = Some((p.width, p.height));
                if p.frame_rate_milli > 0 {
                    frame_rate = Some(f64::from(p.frame_rate_milli) / 1000.0);
                }
            }
        }
        Variant {
            uri,
            bandwidth,
            average_bandwidth,
            codecs,
            resolution,
            frame_rate,
        }
    }
}

/// A multivariant playlist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MultivariantPlaylist {
    /// The variants, in the order listed.
    pub variants: Vec<Variant>,
}

impl MultivariantPlaylist {
    /// Renders the playlist.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "#EXTM3U");
        let _ = writeln!(s, "#EXT-X-VERSION:6");
        let _ = writeln!(s, "#EXT-X-INDEPENDENT-SEGMENTS");
        for v in &self.variants {
            let _ = write!(s, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
            if let Some(a) = v.average_bandwidth {
                let _ = write!(s, ",AVERAGE-BANDWIDTH={a}");
            }
            if !v.codecs.is_empty() {
                let _ = write!(s, ",CODECS=\"{}\"", v.codecs);
            }
            if let Some((w, h)) = v.resolution {
                let _ = write!(s, ",RESOLUTION={w}x{h}");
            }
            if let Some(f) = v.frame_rate {
                let _ = write!(s, ",FRAME-RATE={f:.3}");
            }
            let _ = writeln!(s);
            let _ = writeln!(s, "{}", v.uri);
        }
        s
    }
}
