//! MPEG-TS over SRT: what a publisher sends becomes the kernel's frames
//! ([`TsIngest`], through the media plane's demuxer), and what a player
//! receives is the stream muxed into MPEG-TS ([`TsEgress`]), cut into
//! payloads of seven TS packets.

use std::collections::VecDeque;

use arcly_core::bus::DeliveryRef;
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig, TsEvent, TsMuxer, TsMuxerConfig};
use arcly_core::session::SessionEvent;
use arcly_core::time::Timescale;
use bytes::{Bytes, BytesMut};

/// Seven TS packets: the payload every SRT implementation sends.
pub const TS_PAYLOAD: usize = 7 * 188;

/// Frames held at most while the tracks are being learned.
const HOLD_FRAMES: usize = 120;
/// Decode-time span held at most while the tracks are being learned, ms.
const HOLD_SPAN_MS: i64 = 1_000;

/// What a publisher's MPEG-TS carried so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// TS continuity losses seen.
    pub continuity_losses: u64,
    /// Bytes skipped to find sync.
    pub sync_skipped: u64,
    /// Elementary-stream errors (dropped parts).
    pub errors: u64,
}

/// MPEG-TS in, the kernel's track configuration and frames out.
///
/// The tracks are announced together: frames are held (at most
/// [`HOLD_FRAMES`] or one second of them) until both a video and an audio
/// track are known, so that a stream's first configuration is whole rather
/// than video first and audio as a change.
#[derive(Debug)]
pub struct TsIngest {
    demux: TsDemuxer,
    tracks: TrackSet,
    announced: bool,
    held: Vec<MediaFrame>,
    events: VecDeque<SessionEvent>,
    stats: IngestStats,
}

impl Default for TsIngest {
    fn default() -> Self {
        TsIngest::new()
    }
}

impl TsIngest {
    /// An ingest that has seen nothing.
    pub fn new() -> Self {
        TsIngest {
            demux: TsDemuxer::new(TsDemuxerConfig::default()),
            tracks: TrackSet::new(),
            announced: false,
            held: Vec::new(),
            events: VecDeque::new(),
            stats: IngestStats::default(),
        }
    }

    /// What it counted.
    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// Bytes of the TS stream (any cut; the demuxer keeps partial packets).
    pub fn push(&mut self, data: &[u8]) {
        self.demux.push(data);
        while let Some(ev) = self.demux.poll_event() {
            match ev {
                TsEvent::Track(info) => {
                    let changed = self.tracks.get(info.id) != Some(&info);
                    if self.tracks.upsert(info).is_err() || !changed {
                        continue;
                    }
                    if self.announced {
                        self.events
                            .push_back(SessionEvent::Tracks(Box::new(self.tracks.clone())));
                    } else if self.tracks.video().is_some() && self.tracks.audio().is_some() {
                        self.announce();
                    }
                }
                TsEvent::Frame(f) => {
                    if self.announced {
                        self.events.push_back(SessionEvent::Frame(f));
                    } else {
                        self.held.push(f);
                        let span = match (self.held.first(), self.held.last()) {
                            (Some(a), Some(b)) => {
                                b.dts.rescale(Timescale::MILLIS).ticks
                                    - a.dts.rescale(Timescale::MILLIS).ticks
                            }
                            _ => 0,
                        };
                        if self.held.len() >= HOLD_FRAMES || span >= HOLD_SPAN_MS {
                            self.announce();
                        }
                    }
                }
                TsEvent::ContinuityLoss { .. } => self.stats.continuity_losses += 1,
                TsEvent::SyncLoss { skipped } => self.stats.sync_skipped += skipped as u64,
                TsEvent::Error { .. } => self.stats.errors += 1,
                _ => {}
            }
        }
    }

    fn announce(&mut self) {
        self.announced = true;
        self.events
            .push_back(SessionEvent::Tracks(Box::new(self.tracks.clone())));
        for f in self.held.drain(..) {
            self.events.push_back(SessionEvent::Frame(f));
        }
    }

    /// The end of the stream: what is held goes out.
    pub fn finish(&mut self) {
        self.demux.flush();
        self.push(&[]);
        if !self.announced && !self.tracks.is_empty() {
            self.announce();
        }
    }

    /// The next event for the host.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
}

/// The kernel's deliveries in, MPEG-TS payloads out.
#[derive(Debug, Default)]
pub struct TsEgress {
    mux: Option<TsMuxer>,
    tracks: Option<TrackSet>,
    buf: BytesMut,
    wait_key: bool,
    /// Frames that could not be muxed (dropped).
    pub errors: u64,
}

impl TsEgress {
    /// An egress that has seen nothing.
    pub fn new() -> Self {
        TsEgress::default()
    }

    /// Takes one delivery; its TS packets wait in [`TsEgress::poll_payload`].
    pub fn delivery(&mut self, d: DeliveryRef<'_>) {
        match d {
            DeliveryRef::Tracks(t) => {
                let same_ids = self.tracks.as_ref().is_some_and(|old| {
                    old.len() == t.len()
                        && old
                            .iter()
                            .zip(t.iter())
                            .all(|(a, b)| a.id == b.id && a.codec == b.codec)
                });
                match (&mut self.mux, same_ids) {
                    (Some(m), true) => {
                        for tr in t.iter() {
                            if m.update_track(tr).is_err() {
                                self.errors += 1;
                            }
                        }
                    }
                    _ => match TsMuxer::new(t, TsMuxerConfig::default()) {
                        Ok(m) => self.mux = Some(m),
                        Err(_) => {
                            self.errors += 1;
                            self.mux = None;
                        }
                    },
                }
                self.tracks = Some((**t).clone());
                self.wait_key = t.has_video();
            }
            DeliveryRef::Frame(f) => {
                let Some(m) = &mut self.mux else { return };
                if self.wait_key {
                    if !(f.codec.is_video() && f.is_key()) {
                        return;
                    }
                    self.wait_key = false;
                }
                if m.write_frame(f, &mut self.buf).is_err() {
                    self.errors += 1;
                }
            }
            DeliveryRef::Lagged { .. } => {
                self.wait_key = self.tracks.as_ref().is_some_and(TrackSet::has_video);
            }
        }
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next payload: seven TS packets, or what is left of the last frame
    /// (whole TS packets).
    pub fn poll_payload(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        let n = self.buf.len().min(TS_PAYLOAD);
        Some(self.buf.split_to(n).freeze())
    }
}
