#![no_main]
//! VP9 frame header and vpcC parsers never panic.

use arcly_core::media::codec::vp9;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = vp9::FrameHeader::parse(data) {
        let _ = vp9::VpcConfig::from_key_frame(&h);
    }
    let _ = vp9::VpcConfig::parse(data);
    let _ = vp9::ivf_frames(&Bytes::copy_from_slice(data));
});
