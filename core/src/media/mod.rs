//! The media plane: codec parsers, containers and playlists, each a sans-IO
//! state machine: frames in; bytes, segments and playlist updates out.
//!
//! * [`codec`]: bitstream parsers (H.264/H.265 parameter sets, AV1 sequence
//!   header, VP9 frame header, AAC AudioSpecificConfig and ADTS, OpusHead,
//!   MPEG audio headers), Annex-B/length-prefixed conversion, the decoder
//!   configuration records (`avcC`, `hvcC`, `av1C`, `vpcC`, `esds`, `dOps`)
//!   and RFC 6381 codec strings computed from the bitstream.
//! * [`ts`]: MPEG-TS multiplexer and demultiplexer (H.222.0).
//! * [`flv`]: FLV tags from tracks and frames, shared by RTMP's egress and
//!   HTTP-FLV (FLV specification 10.1 annex E, enhanced RTMP).
//! * [`fmp4`]: fragmented MP4 / CMAF init segments, segments and LL-HLS
//!   parts (ISO/IEC 14496-12, 23000-19).
//! * [`hls`]: HLS and LL-HLS media and multivariant playlists, the segmenter,
//!   and answers to blocking playlist reloads (RFC 8216bis).
//! * [`record`]: a stream recorded as a VOD HLS recording in a storage key
//!   space (the segmenter's output as storage writes).
//!
//! Frames everywhere are [`MediaFrame`](crate::frame::MediaFrame)s in the
//! canonical payload form of [`crate::frame`]; decoder configuration travels
//! as [`TrackInfo::config`](crate::frame::TrackInfo::config). Nothing here
//! reads a clock or performs IO; every length read from input is bounded
//! before it is used to allocate.

pub mod codec;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod record;
pub mod ts;
