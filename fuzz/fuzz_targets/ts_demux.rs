#![no_main]
//! The MPEG-TS demuxer never panics and stays bounded on any input, in any
//! chunking.

use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let mut d = TsDemuxer::new(TsDemuxerConfig {
        max_pes_size: 1 << 16,
    });
    for c in data.chunks(usize::from(chunk).max(1)) {
        d.push(c);
        while d.poll_event().is_some() {}
    }
    d.flush();
    while d.poll_event().is_some() {}
});
