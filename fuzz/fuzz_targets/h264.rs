#![no_main]
//! H.264 parsers never panic.

use arcly_core::media::codec::{h264, nal};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = h264::Sps::parse(data);
    let b = Bytes::copy_from_slice(data);
    if let Ok(c) = h264::AvcConfig::parse(&b) {
        let _ = c.params();
        let _ = h264::AvcConfig::parse(&c.to_bytes());
    }
    let lp = nal::annex_b_to_length_prefixed(b.clone());
    let _ = nal::length_prefixed_to_annex_b(lp);
    let _ = nal::length_prefixed_to_annex_b(b);
});
