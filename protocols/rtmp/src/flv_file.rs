//! The FLV file container, read incrementally: core's reader
//! ([`arcly_core::media::flv::FlvFileReader`]), named here where RTMP's
//! users (remux, the fuzz targets) have always found it.

pub use arcly_core::media::flv::{FileTag, FlvFileError, FlvFileReader, TagKind};
