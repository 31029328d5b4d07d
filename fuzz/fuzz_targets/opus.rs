#![no_main]
//! OpusHead and TOC parsers never panic.

use arcly_core::media::codec::opus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = opus::OpusHead::parse(data) {
        let _ = h.to_dops();
        assert_eq!(opus::OpusHead::parse(&h.to_bytes()).ok(), Some(h));
    }
    let _ = opus::packet_samples(data);
});
