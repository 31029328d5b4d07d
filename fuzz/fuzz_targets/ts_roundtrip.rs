#![no_main]
//! Whatever the demuxer reads from arbitrary bytes, the muxer writes back and
//! the demuxer reads again; the fMP4 fragmenter takes the same frames.

use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::fmp4::{Fmp4Config, Fmp4Muxer};
use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig, TsMuxer, TsMuxerConfig};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fn demux(data: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
    TsDemuxer::read_all_with(
        TsDemuxerConfig {
            max_pes_size: 1 << 16,
        },
        data,
    )
}

fuzz_target!(|data: &[u8]| {
    let (tracks, frames) = demux(data);
    if let Ok(mut f) = Fmp4Muxer::new(&tracks, Fmp4Config::default()) {
        for fr in &frames {
            let _ = f.push(fr);
        }
        f.flush();
        while f.poll_fragment().is_some() {}
    }
    let Ok(mut m) = TsMuxer::new(&tracks, TsMuxerConfig::default()) else {
        return;
    };
    let mut out = BytesMut::new();
    let mut written = Vec::new();
    for f in frames {
        if m.write_frame(&f, &mut out).is_ok() {
            written.push(f);
        }
    }
    let (_, again) = demux(&out);
    assert!(again.len() <= written.len() * 64 + 64);
});
