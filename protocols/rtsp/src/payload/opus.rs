//! Opus over RTP, RFC 7587: one Opus packet per RTP packet (§4.2), the
//! 48 kHz clock whatever the input rate (§4.1), `opus/48000/2` in
//! `a=rtpmap` and `sprop-stereo` in `a=fmtp` (§6.1, §7).
//!
//! RTP carries no pre-skip, so the `OpusHead` made for the track has
//! pre-skip 0 (as the MPEG-TS demuxer uses when the stream does not say).
//! Its channel count is 1 when the sender says `sprop-stereo=0` and 2
//! otherwise: a decoder set up for stereo plays a mono stream well, the
//! other way round it would fold a stereo one to mono.

use std::collections::VecDeque;

use arcly_core::frame::TrackInfo;
use arcly_core::media::codec::opus::OpusHead;
use bytes::Bytes;

use super::{fmtp_param, AccessUnit, PacketSink, PayloadError};
use crate::rtp::RtpPacket;

/// Packets waiting for `pop` before the oldest is dropped.
const MAX_QUEUED: usize = 16;

/// Opus packets out of RTP packets.
#[derive(Debug)]
pub struct OpusDepacketizer {
    config: Bytes,
    changed: bool,
    out: VecDeque<AccessUnit>,
    dropped: u64,
}

impl OpusDepacketizer {
    /// A depacketizer. The channel count of `a=rtpmap` is always 2 (§7)
    /// and says nothing; `sprop-stereo` does.
    pub fn new(_rtpmap_channels: u8, fmtp: &[(String, String)]) -> Self {
        let channels = match fmtp_param(fmtp, "sprop-stereo") {
            Some("0") => 1,
            _ => 2,
        };
        OpusDepacketizer {
            config: OpusHead::new(channels, 0, 48_000).to_bytes(),
            changed: true,
            out: VecDeque::new(),
            dropped: 0,
        }
    }

    /// One packet (see [`super::Depacketizer::push`]); a loss does not
    /// matter to the packets after it.
    pub fn push(
        &mut self,
        pkt: &RtpPacket,
        timestamp: i64,
        _lost: bool,
    ) -> Result<(), PayloadError> {
        if pkt.payload.is_empty() {
            self.dropped += 1;
            return Err(PayloadError::Malformed {
                sequence: pkt.header.sequence,
                what: "an empty Opus packet",
            });
        }
        self.out.push_back(AccessUnit {
            timestamp,
            key: true,
            data: pkt.payload.clone(),
        });
        if self.out.len() > MAX_QUEUED {
            self.out.pop_front();
            self.dropped += 1;
        }
        Ok(())
    }

    /// The next packet.
    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.out.pop_front()
    }

    /// The `OpusHead`.
    pub fn config(&self) -> Bytes {
        self.config.clone()
    }

    /// Whether the configuration changed since the last call (once, at
    /// first).
    pub fn take_config_changed(&mut self) -> bool {
        core::mem::take(&mut self.changed)
    }

    /// Packets dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// One RTP packet per Opus packet; the marker on the first of the stream.
pub(crate) fn packetize(
    timestamp: u32,
    payload: &Bytes,
    max_payload: usize,
    first: bool,
    sink: &mut PacketSink<'_>,
) -> Result<(), PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an empty Opus packet",
        });
    }
    if payload.len() > max_payload {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an Opus packet larger than the MTU",
        });
    }
    sink.emit(first, &[payload]);
    Ok(())
}

/// `sprop-stereo=1` for a stereo track, `None` for mono.
pub(crate) fn fmtp(track: &TrackInfo) -> Option<String> {
    let channels = OpusHead::parse(&track.config)
        .map(|h| h.channels)
        .unwrap_or(track.params.channels);
    (channels >= 2).then(|| "sprop-stereo=1".to_string())
}
