//! FLV audio and video tag parsing of arbitrary bytes.

#![no_main]

use arcly_rtmp::flv;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let b = Bytes::copy_from_slice(data);
    let _ = flv::parse_video(&b);
    let _ = flv::parse_audio(&b);
});
