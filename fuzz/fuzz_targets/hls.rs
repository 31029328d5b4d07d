#![no_main]
//! The HLS segmenter and playlists never panic on whatever frames the TS
//! demuxer reads from arbitrary bytes, and blocking requests always get an
//! answer.

use arcly_core::media::hls::{HlsConfig, HlsSegmenter, SegmentFormat};
use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let (tracks, frames) = TsDemuxer::read_all_with(
        TsDemuxerConfig {
            max_pes_size: 1 << 16,
        },
        data,
    );
    let config = HlsConfig {
        format: if knobs & 1 == 0 {
            SegmentFormat::Ts
        } else {
            SegmentFormat::Fmp4
        },
        target_duration: u32::from(knobs >> 5),
        part_duration_us: (knobs & 2 != 0).then_some(100_000),
        window: usize::from((knobs >> 2) & 7),
        ..HlsConfig::default()
    };
    let Ok(mut s) = HlsSegmenter::new(&tracks, config) else {
        return;
    };
    for f in &frames {
        let _ = s.push(f);
        while s.poll_event().is_some() {}
        let next = s.playlist().next_msn();
        let _ = s
            .playlist()
            .blocking_request(Some(next), Some(u64::from(knobs)), knobs & 4 != 0);
    }
    s.finish();
    while s.poll_event().is_some() {}
    let _ = s.playlist().render();
    let _ = s.playlist().render_delta();
});
