//! Arbitrary bytes as an FLV file, pushed in two pieces, tags fed to the
//! RTMP ingest: never a panic, never more than the tag bound buffered.
#![no_main]

use arcly_rtmp::flv_file::{FlvFileReader, TagKind};
use arcly_rtmp::ingest::Ingest;
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

fuzz_target!(|data: &[u8]| {
    let mut r = FlvFileReader::new(1 << 16);
    let mut ingest = Ingest::new(10_000);
    let mut events = VecDeque::new();
    let cut = data.len() / 2;
    for piece in [&data[..cut], &data[cut..]] {
        r.push(piece);
        while let Ok(Some(tag)) = r.next_tag() {
            let _ = match tag.kind {
                TagKind::Audio => ingest.audio(tag.timestamp, &tag.body, &mut events),
                TagKind::Video => ingest.video(tag.timestamp, &tag.body, &mut events),
                _ => Ok(()),
            };
            events.clear();
        }
    }
});
