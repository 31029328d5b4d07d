//! Per-stream counters and rates, computed from the time the host passes in.

use crate::frame::{FrameKind, MediaFrame};
use crate::time::Instant;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one published stream. Written by its publisher only,
/// readable by anyone (the stats API, metrics) without a lock.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Frames published.
    pub frames: AtomicU64,
    /// Payload bytes published.
    pub bytes: AtomicU64,
    /// Video frames published.
    pub video_frames: AtomicU64,
    /// Payload bit rate over the last measurement window, in bits per second.
    pub bitrate_bps: AtomicU64,
    /// Video frames per second over the last window, times 1000.
    pub fps_milli: AtomicU64,
    /// When the stream was published (host µs).
    pub started_at: AtomicU64,
    /// When the last frame arrived (host µs).
    pub last_frame_at: AtomicU64,
    /// Key frames players asked for (they joined without one, or lost
    /// packets); the publishing session asks its peer when its protocol
    /// can ([`Session::handle_key_frame_request`](crate::session::Session::handle_key_frame_request)).
    pub key_frame_requests: AtomicU64,
}

impl StreamStats {
    /// Bit rate in bits per second.
    pub fn bitrate(&self) -> u64 {
        self.bitrate_bps.load(Ordering::Relaxed)
    }

    /// Video frame rate.
    pub fn fps(&self) -> f64 {
        self.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// The publisher's side of the measurement: a window of one second.
#[derive(Debug, Default)]
pub(crate) struct QosMeter {
    window_start: Option<Instant>,
    bytes: u64,
    video: u64,
}

const WINDOW_MICROS: u64 = 1_000_000;

impl QosMeter {
    pub fn record(&mut self, stats: &StreamStats, now: Instant, frame: &MediaFrame) {
        let len = frame.payload.len() as u64;
        let video = u64::from(frame.kind != FrameKind::Audio);
        stats.frames.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(len, Ordering::Relaxed);
        stats.video_frames.fetch_add(video, Ordering::Relaxed);
        stats
            .last_frame_at
            .store(now.as_micros(), Ordering::Relaxed);
        let start = *self.window_start.get_or_insert(now);
        self.bytes += len;
        self.video += video;
        let elapsed = now.as_micros().saturating_sub(start.as_micros());
        if elapsed >= WINDOW_MICROS {
            let bps = u128::from(self.bytes) * 8 * 1_000_000 / u128::from(elapsed);
            let fps = u128::from(self.video) * 1_000_000 * 1000 / u128::from(elapsed);
            stats
                .bitrate_bps
                .store(u64::try_from(bps).unwrap_or(u64::MAX), Ordering::Relaxed);
            stats
                .fps_milli
                .store(u64::try_from(fps).unwrap_or(u64::MAX), Ordering::Relaxed);
            self.window_start = Some(now);
            self.bytes = 0;
            self.video = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{CodecId, TrackId};
    use crate::time::MediaTime;
    use bytes::Bytes;

    #[test]
    fn rates_from_injected_time() {
        let stats = StreamStats::default();
        let mut m = QosMeter::default();
        // 30 fps of 1250-byte video frames = 300 kbit/s, over 2 seconds.
        for i in 0..=60u64 {
            let f = MediaFrame::video(
                TrackId(0),
                CodecId::H264,
                i % 30 == 0,
                MediaTime::from_millis(i as i64 * 33),
                Bytes::from(vec![0u8; 1250]),
            );
            m.record(&stats, Instant::from_micros(i * 1_000_000 / 30), &f);
        }
        assert_eq!(stats.frames.load(Ordering::Relaxed), 61);
        let fps = stats.fps();
        assert!((fps - 30.5).abs() < 0.6, "fps {fps}");
        let br = stats.bitrate();
        assert!((295_000..=312_000).contains(&br), "bitrate {br}");
    }
}
