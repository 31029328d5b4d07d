//! The media plane: codec parsers, containers (MPEG-TS, fMP4/CMAF, FLV) and
//! playlists (HLS, LL-HLS), each a state machine: frames in, bytes,
//! segments and playlist updates out.
pub mod codec;
pub mod fmp4;
pub mod hls;
pub mod ts;
