#![no_main]
//! MPEG audio header parser never panics.

use arcly_core::media::codec::mp3;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mp3::FrameHeader::parse(data);
});
