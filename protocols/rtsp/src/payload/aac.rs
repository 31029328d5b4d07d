//! AAC over RTP in the MPEG-4 generic format, RFC 3640: the AU header
//! section (§3.2.1, every field: AU-size, AU-Index and AU-Index-delta,
//! CTS/DTS deltas, RAP flag, stream state), the auxiliary section skipped
//! (§3.2.2), access units fragmented over packets (§3.2.3), the modes
//! `AAC-hbr` (§3.3.6: sizelength 13, indexlength 3, indexdeltalength 3)
//! and `AAC-lbr` (§3.3.5: 6, 2, 2) or any lengths the description gives,
//! and the `a=fmtp` parameters of §4.1.
//!
//! We send `AAC-hbr`: one access unit per packet, a 16-bit AU-headers-length
//! and one AU header (13-bit size, 3-bit index 0); an access unit larger
//! than a packet is fragmented with the marker on its last fragment. A
//! loss drops only the access unit it broke.

use std::collections::VecDeque;

use arcly_core::frame::TrackInfo;
use arcly_core::media::codec::aac::AudioSpecificConfig;
use arcly_core::media::codec::bits::BitReader;
use bytes::{BufMut, Bytes, BytesMut};

use super::{fmtp_param, shown, AccessUnit, PacketSink, PayloadError};
use crate::rtp::RtpPacket;

/// The largest access unit read (an AAC frame holds at most 6144 bits per
/// channel: 48 channels).
pub const MAX_AU_BYTES: usize = 64 * 1024;
/// The most access units one packet may hold.
pub const MAX_AUS_PER_PACKET: usize = 1024;
/// The largest access unit sent: what a 13-bit AU-size holds.
const MAX_SENT_AU: usize = (1 << 13) - 1;
/// Access units waiting for `pop` before the oldest is dropped.
const MAX_QUEUED: usize = MAX_AUS_PER_PACKET + 16;

/// The bit lengths of the AU header fields (§3.2.1, §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Layout {
    size: u32,
    index: u32,
    index_delta: u32,
    cts_delta: u32,
    dts_delta: u32,
    rap: bool,
    stream_state: u32,
    aux_size: u32,
    constant_size: Option<usize>,
}

impl Layout {
    /// Whether packets carry an AU header section.
    fn has_headers(&self) -> bool {
        self.size > 0
            || self.index > 0
            || self.index_delta > 0
            || self.cts_delta > 0
            || self.dts_delta > 0
            || self.rap
            || self.stream_state > 0
    }
}

/// One AU header: the access unit's size (if the header has one) and its
/// serial number relative to the packet's first.
#[derive(Clone, Copy, Debug)]
struct AuHeader {
    size: Option<usize>,
    serial: i64,
}

/// An access unit coming in fragments.
#[derive(Debug)]
struct Fragment {
    ts: i64,
    size: usize,
    data: BytesMut,
}

/// Access units of an AAC stream out of its RTP packets.
#[derive(Debug)]
pub struct AacDepacketizer {
    layout: Layout,
    config: Bytes,
    changed: bool,
    /// RTP ticks per access unit.
    frame_ticks: i64,
    frag: Option<Fragment>,
    /// After a loss: fragments are skipped until one ends an access unit
    /// (the start of the one under way may have been lost).
    resync: bool,
    out: VecDeque<AccessUnit>,
    dropped: u64,
}

fn length(
    fmtp: &[(String, String)],
    name: &'static str,
    default: u32,
) -> Result<u32, PayloadError> {
    match fmtp_param(fmtp, name) {
        None => Ok(default),
        Some(v) => {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n <= 32)
                .ok_or_else(|| PayloadError::Parameter {
                    name,
                    value: shown(v),
                    reason: "not a bit length of 0 to 32",
                })
        }
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl AacDepacketizer {
    /// A depacketizer for the stream `fmtp` describes (`mode`, the AU
    /// header lengths, `constantsize`, `config`); without `config` an AAC
    /// LC configuration for `clock_rate` and `channels` is assumed.
    pub fn new(
        clock_rate: u32,
        channels: u8,
        fmtp: &[(String, String)],
    ) -> Result<Self, PayloadError> {
        let mode = fmtp_param(fmtp, "mode").unwrap_or("");
        let (size, index, delta) = if mode.eq_ignore_ascii_case("AAC-lbr") {
            (6, 2, 2)
        } else if mode.is_empty() || mode.eq_ignore_ascii_case("AAC-hbr") {
            (13, 3, 3)
        } else {
            (0, 0, 0)
        };
        let constant_size = match fmtp_param(fmtp, "constantsize") {
            None => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_AU_BYTES).contains(n))
                    .ok_or_else(|| PayloadError::Parameter {
                        name: "constantsize",
                        value: shown(v),
                        reason: "not a size of 1 to 65536 bytes",
                    })?,
            ),
        };
        let layout = Layout {
            size: length(fmtp, "sizelength", size)?,
            index: length(fmtp, "indexlength", index)?,
            index_delta: length(fmtp, "indexdeltalength", delta)?,
            cts_delta: length(fmtp, "ctsdeltalength", 0)?,
            dts_delta: length(fmtp, "dtsdeltalength", 0)?,
            rap: fmtp_param(fmtp, "randomaccessindication") == Some("1"),
            stream_state: length(fmtp, "streamstateindication", 0)?,
            aux_size: length(fmtp, "auxiliarydatasizelength", 0)?,
            constant_size,
        };
        let (asc, config) = match fmtp_param(fmtp, "config") {
            Some(hex) => {
                let bad = |reason| PayloadError::Parameter {
                    name: "config",
                    value: shown(hex),
                    reason,
                };
                let bytes = hex_decode(hex).ok_or_else(|| bad("not hexadecimal"))?;
                let asc = AudioSpecificConfig::parse(&bytes)
                    .map_err(|_| bad("not an AudioSpecificConfig"))?;
                (asc, Bytes::from(bytes))
            }
            None => {
                let asc = AudioSpecificConfig::lc(clock_rate, channels);
                (asc, asc.to_bytes())
            }
        };
        // An access unit spans frame_samples at the core rate; the RTP
        // clock may run at another (the SBR output rate).
        let samples = u64::from(asc.frame_samples());
        let frame_ticks = match (clock_rate, asc.sample_rate) {
            (0, _) | (_, 0) => samples,
            (clock, rate) => (samples * u64::from(clock) + u64::from(rate) / 2) / u64::from(rate),
        };
        Ok(AacDepacketizer {
            layout,
            config,
            changed: true,
            frame_ticks: i64::try_from(frame_ticks.max(1)).unwrap_or(1024),
            frag: None,
            resync: false,
            out: VecDeque::new(),
            dropped: 0,
        })
    }

    /// One packet in sequence order (see [`super::Depacketizer::push`]).
    pub fn push(
        &mut self,
        pkt: &RtpPacket,
        timestamp: i64,
        lost: bool,
    ) -> Result<(), PayloadError> {
        if lost {
            self.drop_fragment();
            self.resync = true;
        }
        let r = self.read(pkt, timestamp);
        if r.is_err() {
            self.dropped += 1;
            self.drop_fragment();
        }
        r
    }

    fn drop_fragment(&mut self) {
        if self.frag.take().is_some() {
            self.dropped += 1;
        }
    }

    fn emit(&mut self, timestamp: i64, data: Bytes) {
        self.out.push_back(AccessUnit {
            timestamp,
            key: true,
            data,
        });
        if self.out.len() > MAX_QUEUED {
            self.out.pop_front();
            self.dropped += 1;
        }
    }

    /// The AU header section: the headers and where the next section
    /// starts.
    fn headers(&self, p: &[u8], seq: u16) -> Result<(Vec<AuHeader>, usize), PayloadError> {
        let bad = |what| PayloadError::Malformed {
            sequence: seq,
            what,
        };
        if p.len() < 2 {
            return Err(bad("no AU-headers-length"));
        }
        let bits = usize::from(u16::from_be_bytes([p[0], p[1]]));
        let end = 2 + bits.div_ceil(8);
        if end > p.len() {
            return Err(bad("AU headers past the packet"));
        }
        let l = self.layout;
        let mut r = BitReader::new(&p[2..end]);
        let mut out = Vec::new();
        let mut serial = 0i64;
        let trunc = |_| bad("an AU header past AU-headers-length");
        while r.position() < bits {
            if out.len() >= MAX_AUS_PER_PACKET {
                return Err(bad("more than 1024 AU headers"));
            }
            let size = r.read_bits(l.size).map_err(trunc)?;
            if out.is_empty() {
                // AU-Index: serial numbers count from the packet's first.
                r.read_bits(l.index).map_err(trunc)?;
            } else {
                let delta = r.read_bits(l.index_delta).map_err(trunc)?;
                serial = serial.saturating_add(delta as i64).saturating_add(1);
            }
            if l.cts_delta > 0 && r.read_flag().map_err(trunc)? {
                r.skip(l.cts_delta as usize).map_err(trunc)?;
            }
            if l.dts_delta > 0 && r.read_flag().map_err(trunc)? {
                r.skip(l.dts_delta as usize).map_err(trunc)?;
            }
            if l.rap {
                r.skip(1).map_err(trunc)?;
            }
            r.skip(l.stream_state as usize).map_err(trunc)?;
            if r.position() > bits {
                return Err(bad("an AU header past AU-headers-length"));
            }
            out.push(AuHeader {
                size: (l.size > 0).then_some(size as usize),
                serial,
            });
        }
        Ok((out, end))
    }

    fn read(&mut self, pkt: &RtpPacket, ts: i64) -> Result<(), PayloadError> {
        let seq = pkt.header.sequence;
        let p = &pkt.payload;
        let bad = |what| PayloadError::Malformed {
            sequence: seq,
            what,
        };
        let (headers, mut pos) = if self.layout.has_headers() {
            let (h, pos) = self.headers(p, seq)?;
            if h.is_empty() {
                return Err(bad("no AU header"));
            }
            (h, pos)
        } else {
            (Vec::new(), 0)
        };
        if self.layout.aux_size > 0 {
            let mut r = BitReader::new(p.get(pos..).unwrap_or_default());
            let n = r
                .read_bits(self.layout.aux_size)
                .map_err(|_| bad("no auxiliary-data-size"))?;
            let bits = (self.layout.aux_size as usize).saturating_add(n as usize);
            pos = pos.saturating_add(bits.div_ceil(8));
            if pos > p.len() {
                return Err(bad("auxiliary data past the packet"));
            }
        }
        let data = p.slice(pos..);

        // The sizes of the access units.
        let sizes: Vec<(usize, i64)> = if headers.is_empty() {
            match self.layout.constant_size {
                Some(n) => {
                    if data.len() % n != 0 {
                        return Err(bad("a payload not a multiple of constantsize"));
                    }
                    if data.len() / n > MAX_AUS_PER_PACKET {
                        return Err(bad("more than 1024 access units"));
                    }
                    (0..data.len() / n).map(|i| (n, i as i64)).collect()
                }
                None if data.is_empty() => return Err(bad("an empty payload")),
                None => vec![(data.len(), 0)],
            }
        } else {
            let one = headers.len() == 1;
            headers
                .iter()
                .map(|h| match (h.size, self.layout.constant_size) {
                    (Some(s), _) | (None, Some(s)) => Ok((s, h.serial)),
                    (None, None) if one => Ok((data.len(), h.serial)),
                    (None, None) => Err(bad("several AUs without sizes")),
                })
                .collect::<Result<_, _>>()?
        };
        if let [(size, _)] = sizes[..] {
            if size > data.len() {
                return self.fragment(pkt, ts, size, data);
            }
        }
        let mut total = 0usize;
        for &(size, _) in &sizes {
            if size == 0 {
                return Err(bad("an access unit of 0 bytes"));
            }
            total = total.saturating_add(size);
        }
        if total > data.len() {
            return Err(bad("AU sizes past the packet"));
        }
        // Whole access units: a fragmented one under way never ended.
        self.drop_fragment();
        self.resync = false;
        let mut off = 0;
        for (size, serial) in sizes {
            let t = ts.saturating_add(serial.saturating_mul(self.frame_ticks));
            self.emit(t, data.slice(off..off + size));
            off += size;
        }
        Ok(())
    }

    /// A fragment of an access unit of `size` bytes (§3.2.3: same time
    /// stamp on every fragment, the marker on the last).
    fn fragment(
        &mut self,
        pkt: &RtpPacket,
        ts: i64,
        size: usize,
        data: Bytes,
    ) -> Result<(), PayloadError> {
        let seq = pkt.header.sequence;
        let marker = pkt.header.marker;
        if size > MAX_AU_BYTES {
            self.drop_fragment();
            return Err(PayloadError::TooLarge {
                sequence: seq,
                limit: MAX_AU_BYTES,
            });
        }
        let continues = self
            .frag
            .as_ref()
            .is_some_and(|f| f.ts == ts && f.size == size);
        if !continues {
            self.drop_fragment();
            if self.resync {
                // This may be a middle fragment whose start was lost.
                if marker {
                    self.resync = false;
                    self.dropped += 1;
                }
                return Ok(());
            }
            self.frag = Some(Fragment {
                ts,
                size,
                data: BytesMut::with_capacity(size),
            });
        }
        let Some(f) = self.frag.as_mut() else {
            return Ok(());
        };
        if f.data.len() + data.len() > size {
            self.drop_fragment();
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "fragments longer than their AU-size",
            });
        }
        f.data.put_slice(&data);
        if f.data.len() == size {
            if let Some(f) = self.frag.take() {
                self.emit(f.ts, f.data.freeze());
            }
        } else if marker {
            self.drop_fragment();
            return Err(PayloadError::Malformed {
                sequence: seq,
                what: "a last fragment short of its AU-size",
            });
        }
        Ok(())
    }

    /// The next access unit.
    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.out.pop_front()
    }

    /// The `AudioSpecificConfig`.
    pub fn config(&self) -> Bytes {
        self.config.clone()
    }

    /// Whether the configuration changed since the last call (once, at
    /// first).
    pub fn take_config_changed(&mut self) -> bool {
        core::mem::take(&mut self.changed)
    }

    /// Access units dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Packets of one access unit (`AAC-hbr`): one AU header with its 13-bit
/// size and index 0, the access unit fragmented when it does not fit.
pub(crate) fn packetize(
    timestamp: u32,
    payload: &Bytes,
    max_payload: usize,
    sink: &mut PacketSink<'_>,
) -> Result<(), PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an empty AAC access unit",
        });
    }
    if payload.len() > MAX_SENT_AU {
        return Err(PayloadError::Frame {
            timestamp,
            what: "an AAC access unit over 8191 bytes (a 13-bit AU-size)",
        });
    }
    let size = payload.len() as u16;
    // AU-headers-length 16 bits; AU-size (13) and AU-Index 0 (3).
    let header = [0x00, 0x10, (size >> 5) as u8, ((size & 0x1F) << 3) as u8];
    let chunk = max_payload - header.len();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        sink.emit(end == payload.len(), &[&header, &payload[off..end]]);
        off = end;
    }
    Ok(())
}

fn asc(track: &TrackInfo) -> Option<AudioSpecificConfig> {
    AudioSpecificConfig::parse(&track.config).ok()
}

/// The RTP clock: the `AudioSpecificConfig`'s sample rate.
pub(crate) fn clock_rate(track: &TrackInfo) -> u32 {
    asc(track)
        .map(|a| a.sample_rate)
        .filter(|r| *r > 0)
        .or(Some(track.params.sample_rate).filter(|r| *r > 0))
        .unwrap_or(track.timescale.hz())
}

/// `MPEG4-GENERIC/RATE/CHANNELS`, or `None` without a usable config.
pub(crate) fn rtpmap(track: &TrackInfo) -> Option<String> {
    let a = asc(track)?;
    let rate = clock_rate(track);
    match (a.channels(), track.params.channels) {
        (0, 0) => Some(format!("MPEG4-GENERIC/{rate}")),
        (0, c) | (c, _) => Some(format!("MPEG4-GENERIC/{rate}/{c}")),
    }
}

/// The `AAC-hbr` parameters with the track's config in hex.
pub(crate) fn fmtp(track: &TrackInfo) -> Option<String> {
    asc(track)?;
    let hex: String = track.config.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={hex}"
    ))
}
