//! HTTP Live Streaming (RFC 8216, and draft-pantos-hls-rfc8216bis for
//! Low-Latency HLS): media playlists with parts, preload hints, delta
//! updates and blocking reloads ([`playlist`]), multivariant playlists
//! ([`multivariant`]), and the segmenter that turns frames into TS or fMP4
//! segments and parts ([`segmenter`]).

pub mod multivariant;
pub mod playlist;
pub mod segmenter;

pub use multivariant::{MultivariantPlaylist, Variant};
pub use playlist::{
    BlockingAnswer, BlockingCheck, MediaPlaylist, PlaylistPart, PlaylistSegment, PlaylistType,
    RenditionReport,
};
pub use segmenter::{HlsConfig, HlsEvent, HlsSegmenter, SegmentFormat};
