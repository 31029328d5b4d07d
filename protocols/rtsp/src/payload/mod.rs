//! RTP payload formats: access units of the kernel's canonical form (see
//! [`arcly_core::frame`]) out of RTP packets and back, and the SDP
//! parameters (`a=rtpmap`, `a=fmtp`) that describe them.
//!
//! * [`h264`]: H.264, RFC 6184 (single NAL unit, STAP-A, FU-A; §5.6–5.8,
//!   parameters §8.1).
//! * [`h265`]: H.265, RFC 7798 (single NAL unit, AP, FU; §4.4, parameters
//!   §7.1).
//! * [`aac`]: AAC in MPEG-4 generic, RFC 3640 (AU headers §3.2.1,
//!   fragmentation §3.2.3, `AAC-hbr` §3.3.6 and `AAC-lbr` §3.3.5).
//! * [`opus`]: Opus, RFC 7587 (§4.2, parameters §6.1 and §7).
//!
//! A [`Depacketizer`] takes packets in sequence order with `push` and hands
//! out access units with `pop`: pull until `None` between pushes. It never
//! hands out a damaged access unit: after a loss or a malformed packet,
//! video resumes at the next key frame and audio at the next whole access
//! unit. A [`Packetizer`] cuts a frame into packets no larger than its MTU.

pub mod aac;
mod access_unit;
pub mod h264;
pub mod h265;
pub mod opus;

#[cfg(test)]
mod tests;

use arcly_core::frame::{CodecId, TrackInfo};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::rtp::{RtpHeader, RtpPacket};

pub use access_unit::{MAX_AU_BYTES, MAX_AU_NALS};

/// The smallest MTU a [`Packetizer`] takes.
pub const MIN_MTU: usize = 64;
/// The largest MTU a [`Packetizer`] takes (what a 16-bit interleaved
/// frame length holds).
pub const MAX_MTU: usize = 65_535;

/// One access unit out of a depacketizer, in the kernel's canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// Its RTP time stamp, extended (see
    /// [`TimestampUnwrapper`](crate::rtp::TimestampUnwrapper)); for AAC each
    /// access unit of a packet holding several gets its own (the packet's
    /// plus its index times the frame length).
    pub timestamp: i64,
    /// Video: whether a decoder can start here (H.264 IDR, H.265 IRAP).
    /// Audio: always true.
    pub key: bool,
    /// The payload in canonical form (H.264/H.265: 4-byte length-prefixed
    /// NAL units; AAC: one raw access unit; Opus: one packet).
    pub data: Bytes,
}

/// What went wrong with a payload: a packet that does not follow its
/// format, a parameter of the description we cannot use, or a frame we
/// were given to send that is not in canonical form.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// No RTP payload format here for this codec.
    #[error("no RTP payload format for {}", .0.name())]
    UnsupportedCodec(CodecId),
    /// An `a=fmtp` parameter we cannot use.
    #[error("fmtp parameter {name}={value:?}: {reason}")]
    Parameter {
        /// The parameter's name.
        name: &'static str,
        /// Its value (at most 64 characters of it).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A packet that does not follow its payload format.
    #[error("RTP packet {sequence}: {what}")]
    Malformed {
        /// The packet's sequence number.
        sequence: u16,
        /// What is wrong.
        what: &'static str,
    },
    /// A packet type of the format we do not read (interleaved mode).
    #[error("RTP packet {sequence}: {what} (type {packet_type}) is not supported")]
    UnsupportedPacket {
        /// The packet's sequence number.
        sequence: u16,
        /// What it is.
        what: &'static str,
        /// The NAL unit type in its payload header.
        packet_type: u8,
    },
    /// An access unit grew past the bound.
    #[error("RTP packet {sequence}: access unit larger than {limit} bytes")]
    TooLarge {
        /// The packet's sequence number.
        sequence: u16,
        /// The bound in bytes.
        limit: usize,
    },
    /// An access unit has too many NAL units.
    #[error("RTP packet {sequence}: access unit of more than {limit} NAL units")]
    TooManyNals {
        /// The packet's sequence number.
        sequence: u16,
        /// The bound.
        limit: usize,
    },
    /// The MTU given to a packetizer is outside [`MIN_MTU`]..=[`MAX_MTU`].
    #[error("MTU {0} outside {MIN_MTU}..={MAX_MTU}")]
    Mtu(usize),
    /// A payload type above 127.
    #[error("payload type {0} above 127")]
    PayloadType(u8),
    /// A frame to send that is not in canonical form or cannot be carried.
    #[error("frame at RTP time {timestamp}: {what}")]
    Frame {
        /// The frame's RTP time stamp.
        timestamp: u32,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// The depacketizer of one track.
#[derive(Debug)]
pub enum Depacketizer {
    /// H.264 (RFC 6184).
    H264(h264::H264Depacketizer),
    /// H.265 (RFC 7798).
    H265(h265::H265Depacketizer),
    /// AAC (RFC 3640).
    Aac(aac::AacDepacketizer),
    /// Opus (RFC 7587).
    Opus(opus::OpusDepacketizer),
}

impl Depacketizer {
    /// The depacketizer for a track of `codec`. `fmtp`: the key=value pairs
    /// of the SDP `a=fmtp:` line (keys compared without regard to case),
    /// e.g. `sprop-parameter-sets`, `sprop-vps`/`sprop-sps`/`sprop-pps`,
    /// `config`, `mode`, `sizelength`; `clock_rate` and `channels` from
    /// `a=rtpmap`.
    pub fn new(
        codec: CodecId,
        clock_rate: u32,
        channels: u8,
        fmtp: &[(String, String)],
    ) -> Result<Self, PayloadError> {
        Ok(match codec {
            CodecId::H264 => Depacketizer::H264(h264::H264Depacketizer::new(fmtp)?),
            CodecId::H265 => Depacketizer::H265(h265::H265Depacketizer::new(fmtp)?),
            CodecId::Aac => {
                Depacketizer::Aac(aac::AacDepacketizer::new(clock_rate, channels, fmtp)?)
            }
            CodecId::Opus => Depacketizer::Opus(opus::OpusDepacketizer::new(channels, fmtp)),
            other => return Err(PayloadError::UnsupportedCodec(other)),
        })
    }

    /// One packet, in sequence order, with its extended time stamp; `lost`:
    /// packets went missing just before it. Pull with [`pop`](Self::pop)
    /// until `None` between pushes. After an error the depacketizer stays
    /// usable (video waits for the next key frame).
    pub fn push(
        &mut self,
        pkt: &RtpPacket,
        timestamp: i64,
        lost: bool,
    ) -> Result<(), PayloadError> {
        match self {
            Depacketizer::H264(d) => d.push(pkt, timestamp, lost),
            Depacketizer::H265(d) => d.push(pkt, timestamp, lost),
            Depacketizer::Aac(d) => d.push(pkt, timestamp, lost),
            Depacketizer::Opus(d) => d.push(pkt, timestamp, lost),
        }
    }

    /// The next access unit.
    #[must_use]
    pub fn pop(&mut self) -> Option<AccessUnit> {
        match self {
            Depacketizer::H264(d) => d.pop(),
            Depacketizer::H265(d) => d.pop(),
            Depacketizer::Aac(d) => d.pop(),
            Depacketizer::Opus(d) => d.pop(),
        }
    }

    /// The decoder configuration known now (avcC or hvcC from the
    /// `sprop-*` parameters and the parameter sets seen in band, the AAC
    /// `AudioSpecificConfig`, an `OpusHead`), or `None` until known.
    pub fn config(&self) -> Option<Bytes> {
        match self {
            Depacketizer::H264(d) => d.config(),
            Depacketizer::H265(d) => d.config(),
            Depacketizer::Aac(d) => Some(d.config()),
            Depacketizer::Opus(d) => Some(d.config()),
        }
    }

    /// Whether [`config`](Self::config) changed since the last call of
    /// this (true once at first when the configuration is known from the
    /// description), so the caller publishes the track again before the
    /// next frame.
    pub fn take_config_changed(&mut self) -> bool {
        match self {
            Depacketizer::H264(d) => d.take_config_changed(),
            Depacketizer::H265(d) => d.take_config_changed(),
            Depacketizer::Aac(d) => d.take_config_changed(),
            Depacketizer::Opus(d) => d.take_config_changed(),
        }
    }

    /// Access units dropped because of loss or malformed packets (for video
    /// also those skipped while waiting for a key frame).
    pub fn dropped(&self) -> u64 {
        match self {
            Depacketizer::H264(d) => d.dropped(),
            Depacketizer::H265(d) => d.dropped(),
            Depacketizer::Aac(d) => d.dropped(),
            Depacketizer::Opus(d) => d.dropped(),
        }
    }
}

/// Writes whole RTP packets for one frame: the header template and its
/// sequence number, the packets going to `out`.
pub(crate) struct PacketSink<'a> {
    header: &'a mut RtpHeader,
    out: &'a mut Vec<Bytes>,
}

impl PacketSink<'_> {
    /// One packet made of `parts`.
    pub(crate) fn emit(&mut self, marker: bool, parts: &[&[u8]]) {
        let len = RtpHeader::LEN + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut b = BytesMut::with_capacity(len);
        self.header.marker = marker;
        self.header.write(&mut b);
        for p in parts {
            b.put_slice(p);
        }
        self.out.push(b.freeze());
        self.header.sequence = self.header.sequence.wrapping_add(1);
    }
}

/// Cuts frames of one track into RTP packets.
#[derive(Debug)]
pub struct Packetizer {
    codec: CodecId,
    header: RtpHeader,
    /// The largest payload after the 12-byte header.
    max_payload: usize,
    /// Packets sent so far (the first Opus packet carries the marker).
    sent: u64,
}

impl Packetizer {
    /// A packetizer for `codec`; `mtu`: the largest RTP packet, the 12-byte
    /// header included ([`MIN_MTU`]..=[`MAX_MTU`]; callers use about 1400).
    pub fn new(
        codec: CodecId,
        payload_type: u8,
        ssrc: u32,
        first_sequence: u16,
        mtu: usize,
    ) -> Result<Self, PayloadError> {
        if !matches!(
            codec,
            CodecId::H264 | CodecId::H265 | CodecId::Aac | CodecId::Opus
        ) {
            return Err(PayloadError::UnsupportedCodec(codec));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(PayloadError::Mtu(mtu));
        }
        if payload_type > 127 {
            return Err(PayloadError::PayloadType(payload_type));
        }
        Ok(Packetizer {
            codec,
            header: RtpHeader {
                marker: false,
                payload_type,
                sequence: first_sequence,
                timestamp: 0,
                ssrc,
            },
            max_payload: mtu - RtpHeader::LEN,
            sent: 0,
        })
    }

    /// Packetizes one frame payload (canonical form) at `timestamp`,
    /// appending whole RTP packets (header included) to `out`. Video: the
    /// marker on the last packet of the access unit; AAC: on every packet
    /// that ends an access unit; Opus: on the first packet of the stream
    /// (the start of a talkspurt, RFC 7587 §4.1). On error nothing is
    /// appended and no sequence number is used.
    pub fn packetize(
        &mut self,
        timestamp: u32,
        payload: &Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<(), PayloadError> {
        self.header.timestamp = timestamp;
        let before = out.len();
        let mut sink = PacketSink {
            header: &mut self.header,
            out: &mut *out,
        };
        match self.codec {
            CodecId::H264 => h264::packetize(timestamp, payload, self.max_payload, &mut sink)?,
            CodecId::H265 => h265::packetize(timestamp, payload, self.max_payload, &mut sink)?,
            CodecId::Aac => aac::packetize(timestamp, payload, self.max_payload, &mut sink)?,
            CodecId::Opus => opus::packetize(
                timestamp,
                payload,
                self.max_payload,
                self.sent == 0,
                &mut sink,
            )?,
            other => return Err(PayloadError::UnsupportedCodec(other)),
        }
        self.sent += (out.len() - before) as u64;
        Ok(())
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.header.sequence
    }

    /// The largest payload a packet carries after its 12-byte header.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
}

/// The `a=rtpmap:` value after the payload type for a track (`H264/90000`,
/// `H265/90000`, `MPEG4-GENERIC/44100/2`, `opus/48000/2`), or `None` when
/// the track cannot be sent over RTP here.
pub fn rtpmap(track: &TrackInfo) -> Option<String> {
    match track.codec {
        CodecId::H264 => Some("H264/90000".to_string()),
        CodecId::H265 => Some("H265/90000".to_string()),
        CodecId::Aac => aac::rtpmap(track),
        CodecId::Opus => Some("opus/48000/2".to_string()),
        _ => None,
    }
}

/// The `a=fmtp:` value after the payload type for a track, or `None` when
/// it needs none.
pub fn fmtp(track: &TrackInfo) -> Option<String> {
    match track.codec {
        CodecId::H264 => Some(h264::fmtp(track)),
        CodecId::H265 => h265::fmtp(track),
        CodecId::Aac => aac::fmtp(track),
        CodecId::Opus => opus::fmtp(track),
        _ => None,
    }
}

/// The RTP clock rate of a track: 90 kHz for video, the sample rate for
/// AAC (of the `AudioSpecificConfig`, the core decoder's), 48 kHz for Opus.
pub fn clock_rate(track: &TrackInfo) -> u32 {
    match track.codec {
        CodecId::Aac => aac::clock_rate(track),
        CodecId::Opus => 48_000,
        c if c.is_video() => 90_000,
        _ => match track.params.sample_rate {
            0 => track.timescale.hz(),
            r => r,
        },
    }
}

/// The value of an fmtp parameter (name compared without regard to case).
pub(crate) fn fmtp_param<'a>(fmtp: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fmtp.iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A parameter's value for an error, at most 64 characters of it.
pub(crate) fn shown(value: &str) -> String {
    value.chars().take(64).collect()
}

/// Base64 as in RFC 4648 §4, decoding with or without padding.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Base64 (standard alphabet, padded).
pub(crate) fn base64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes base64 (standard alphabet), with or without padding, ignoring
/// white space; `None` when it is not base64.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64_LENIENT.decode(clean.as_bytes()).ok()
}

/// The NAL units of a comma-separated list of base64 parameter sets
/// (`sprop-parameter-sets`, `sprop-vps`, ...): entries that do not decode
/// or are empty are skipped, at most `max` are read.
pub(crate) fn base64_nals(value: &str, max: usize) -> Vec<Bytes> {
    value
        .split(',')
        .filter_map(base64_decode)
        .filter(|n| !n.is_empty())
        .take(max)
        .map(Bytes::from)
        .collect()
}
