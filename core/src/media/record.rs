//! Recording: the HLS segmenter writing a VOD recording into a storage key
//! space. Frames in; storage writes out (the adapter performs them with its
//! `StorageBackend`).
//!
//! A recording under `PREFIX` is `PREFIX/init.mp4` (fMP4), the segments
//! `PREFIX/seg<n>.m4s` or `.ts`, and `PREFIX/index.m3u8`, rewritten after
//! every segment (so a recording cut short is still playable) and ended with
//! `EXT-X-ENDLIST` by [`Recorder::finish`] (RFC 8216bis §4.4.3.4).
//!
//! [`Recorder::live`] writes a live playlist instead, of the last `window`
//! segments, for players reading the storage (HLS through a CDN): a
//! segment that leaves the window is deleted ([`Recorder::poll_delete`])
//! once the playlist that no longer names it is written.

use crate::frame::{MediaFrame, TrackSet};
use crate::media::hls::segmenter::HlsError;
use crate::media::hls::{HlsConfig, HlsEvent, HlsSegmenter, SegmentFormat};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use bytes::Bytes;

/// A write the host must perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoragePut {
    /// The key, `PREFIX/NAME`.
    pub key: String,
    /// The object.
    pub data: Bytes,
}

/// Records one stream. See the module docs.
#[derive(Debug)]
pub struct Recorder {
    prefix: String,
    seg: HlsSegmenter,
    puts: VecDeque<StoragePut>,
    /// Keys to delete once the puts queued are written.
    deletes: VecDeque<String>,
    finished: bool,
}

impl Recorder {
    /// A recording of a stream with `tracks` under `prefix`, in segments of
    /// about `segment_secs`.
    pub fn new(
        prefix: impl Into<String>,
        tracks: &TrackSet,
        format: SegmentFormat,
        segment_secs: u32,
    ) -> Result<Self, HlsError> {
        // A recording keeps every segment and only ever appends.
        let kind = Some(crate::media::hls::PlaylistType::Event);
        Self::with(
            prefix.into(),
            tracks,
            format,
            segment_secs,
            usize::MAX,
            kind,
        )
    }

    /// A live HLS stream under `prefix`: a playlist of the last `window`
    /// segments, the older ones deleted (see the module docs).
    pub fn live(
        prefix: impl Into<String>,
        tracks: &TrackSet,
        format: SegmentFormat,
        segment_secs: u32,
        window: usize,
    ) -> Result<Self, HlsError> {
        Self::with(
            prefix.into(),
            tracks,
            format,
            segment_secs,
            window.max(3),
            None,
        )
    }

    fn with(
        prefix: String,
        tracks: &TrackSet,
        format: SegmentFormat,
        segment_secs: u32,
        window: usize,
        playlist_type: Option<crate::media::hls::PlaylistType>,
    ) -> Result<Self, HlsError> {
        let cfg = HlsConfig {
            format,
            target_duration: segment_secs.max(1),
            part_duration_us: None,
            window,
            playlist_type,
            ..HlsConfig::default()
        };
        Ok(Recorder {
            prefix,
            seg: HlsSegmenter::new(tracks, cfg)?,
            puts: VecDeque::new(),
            deletes: VecDeque::new(),
            finished: false,
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One frame, in decode order.
    pub fn push(&mut self, frame: &MediaFrame) -> Result<(), HlsError> {
        if self.finished {
            return Ok(());
        }
        self.seg.push(frame)?;
        self.drain();
        Ok(())
    }

    /// The stream's tracks changed: a new init segment (fMP4) and a
    /// discontinuity, under the same prefix.
    pub fn update_tracks(&mut self, tracks: &TrackSet) -> Result<(), HlsError> {
        self.seg.update_tracks(tracks)?;
        self.drain();
        Ok(())
    }

    /// Ends the recording: the last segment and the final playlist.
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.seg.finish();
            self.drain();
        }
    }

    /// The next write to perform.
    pub fn poll_put(&mut self) -> Option<StoragePut> {
        self.puts.pop_front()
    }

    /// The next key to delete (a live stream's segment that left the
    /// window), once every write [`poll_put`](Self::poll_put) gave before
    /// it is done: the playlist written last no longer names it.
    pub fn poll_delete(&mut self) -> Option<String> {
        if !self.puts.is_empty() {
            return None;
        }
        self.deletes.pop_front()
    }

    fn drain(&mut self) {
        let mut playlist_changed = false;
        while let Some(ev) = self.seg.poll_event() {
            match ev {
                HlsEvent::Init { uri, data } | HlsEvent::Segment { uri, data } => {
                    self.puts.push_back(StoragePut {
                        key: format!("{}/{uri}", self.prefix),
                        data,
                    });
                    playlist_changed = true;
                }
                HlsEvent::Removed { uri, .. } => {
                    self.deletes.push_back(format!("{}/{uri}", self.prefix));
                    playlist_changed = true;
                }
                _ => {}
            }
        }
        if playlist_changed || self.finished {
            let body = self.seg.playlist().render();
            let key = format!("{}/index.m3u8", self.prefix);
            // Only the newest playlist matters: replace a queued one.
            self.puts.retain(|p| p.key != key);
            self.puts.push_back(StoragePut {
                key,
                data: Bytes::from(body),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{CodecId, TrackId, TrackInfo};
    use crate::time::{MediaTime, Timescale};

    #[test]
    fn an_audio_recording_ends_with_endlist_and_keeps_every_segment() {
        let mut tracks = TrackSet::new();
        tracks
            .upsert(TrackInfo::new(
                TrackId(1),
                CodecId::Aac,
                Timescale::new(48_000).unwrap(),
                Bytes::from_static(&[0x11, 0x90]),
            ))
            .unwrap();
        let mut r = Recorder::new("live/a/1", &tracks, SegmentFormat::Ts, 1).unwrap();
        for i in 0..500i64 {
            let f = MediaFrame::audio(
                TrackId(1),
                CodecId::Aac,
                MediaTime::new(i * 1024, Timescale::new(48_000).unwrap()),
                Bytes::from(alloc::vec![0x21u8; 50]),
            );
            r.push(&f).unwrap();
        }
        r.finish();
        let puts: alloc::vec::Vec<StoragePut> = core::iter::from_fn(|| r.poll_put()).collect();
        let segs = puts.iter().filter(|p| p.key.ends_with(".ts")).count();
        assert!(segs >= 9, "{segs} segments for ~10.7 s");
        let last = puts.last().unwrap();
        assert_eq!(last.key, "live/a/1/index.m3u8");
        let text = core::str::from_utf8(&last.data).unwrap();
        assert!(text.contains("#EXT-X-ENDLIST"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert_eq!(text.matches("#EXTINF").count(), segs);
        assert!(text.contains("seg0.ts"));
    }

    #[test]
    fn a_live_stream_keeps_its_window_and_deletes_after_the_playlist() {
        let mut tracks = TrackSet::new();
        tracks
            .upsert(TrackInfo::new(
                TrackId(1),
                CodecId::Aac,
                Timescale::new(48_000).unwrap(),
                Bytes::from_static(&[0x11, 0x90]),
            ))
            .unwrap();
        let mut r = Recorder::live("up/live/a", &tracks, SegmentFormat::Ts, 1, 3).unwrap();
        // The storage as the host keeps it: puts, then the deletes allowed.
        let mut store = alloc::collections::BTreeMap::new();
        let mut deleted = 0;
        for i in 0..500i64 {
            let f = MediaFrame::audio(
                TrackId(1),
                CodecId::Aac,
                MediaTime::new(i * 1024, Timescale::new(48_000).unwrap()),
                Bytes::from(alloc::vec![0x21u8; 50]),
            );
            r.push(&f).unwrap();
            loop {
                if let Some(p) = r.poll_put() {
                    store.insert(p.key, p.data);
                    // Not before the queued puts are written.
                    continue;
                }
                match r.poll_delete() {
                    Some(k) => {
                        assert!(store.remove(&k).is_some(), "{k} was written");
                        deleted += 1;
                    }
                    None => break,
                }
            }
            // The playlist names only what the storage holds.
            if let Some(pl) = store.get("up/live/a/index.m3u8") {
                let text = core::str::from_utf8(pl).unwrap();
                assert!(!text.contains("#EXT-X-PLAYLIST-TYPE"));
                for uri in text.lines().filter(|l| l.ends_with(".ts")) {
                    assert!(
                        store.contains_key(&format!("up/live/a/{uri}")),
                        "{uri} missing"
                    );
                }
                assert!(text.matches("#EXTINF").count() <= 3);
            }
        }
        assert!(deleted >= 5, "{deleted} deleted");
        assert!(store.keys().filter(|k| k.ends_with(".ts")).count() <= 4);
    }
}
