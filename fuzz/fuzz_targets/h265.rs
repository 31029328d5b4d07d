#![no_main]
//! H.265 parsers never panic.

use arcly_core::media::codec::h265;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = h265::Sps::parse(data);
    let _ = h265::parse_vps_ptl(data);
    let b = Bytes::copy_from_slice(data);
    if let Ok(c) = h265::HevcConfig::parse(&b) {
        let _ = c.params();
        let _ = h265::HevcConfig::parse(&c.to_bytes());
    }
});
