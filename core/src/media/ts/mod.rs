//! MPEG-2 transport stream (ITU-T H.222.0 | ISO/IEC 13818-1): 188-byte
//! packets (§2.4.3.2), adaptation fields with PCR (§2.4.3.4), PSI sections
//! (PAT §2.4.4.3, PMT §2.4.4.8) with their CRC-32 (Annex A), PES packets
//! (§2.4.3.6), and the codec mappings: H.264 (§2.14, stream type 0x1B),
//! H.265 (§2.17, 0x24), AAC in ADTS (0x0F), MPEG audio (0x03/0x04), and
//! Opus as private PES data (0x06) with the `Opus` registration descriptor
//! (the ETSI draft "Opus Interactive Audio Codec Transport Multiplexing
//! Standard" v0.1.3, as ffmpeg writes and reads it).
//!
//! * [`TsMuxer`]: frames in, packets out.
//! * [`TsDemuxer`]: bytes in, tracks, frames and stream events out.

pub mod crc;
pub mod demux;
pub mod mux;
pub mod pes;
pub mod psi;

pub use demux::{TsDemuxer, TsDemuxerConfig, TsEvent};
pub use mux::{TsMuxer, TsMuxerConfig};

/// The size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The sync byte that starts every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// The PID of the program association table.
pub const PID_PAT: u16 = 0;
/// The null packet PID.
pub const PID_NULL: u16 = 0x1FFF;

/// `stream_type` of MPEG-1 audio (used for MP3).
pub const STREAM_TYPE_MPEG1_AUDIO: u8 = 0x03;
/// `stream_type` of MPEG-2 audio.
pub const STREAM_TYPE_MPEG2_AUDIO: u8 = 0x04;
/// `stream_type` of PES private data (Opus, with a registration descriptor).
pub const STREAM_TYPE_PRIVATE_PES: u8 = 0x06;
/// `stream_type` of AAC with ADTS transport syntax.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
/// `stream_type` of AAC with LATM transport syntax.
pub const STREAM_TYPE_AAC_LATM: u8 = 0x11;
/// `stream_type` of H.264.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// `stream_type` of H.265.
pub const STREAM_TYPE_H265: u8 = 0x24;

/// One 90 kHz tick count's modulus: PTS, DTS and the PCR base are 33 bits.
pub const TIMESTAMP_MODULUS: u64 = 1 << 33;
