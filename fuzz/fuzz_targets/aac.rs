#![no_main]
//! AudioSpecificConfig and ADTS parsers never panic; what parses re-encodes.

use arcly_core::media::codec::aac;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = aac::AudioSpecificConfig::parse(data) {
        let _ = c.params();
        let _ = aac::AudioSpecificConfig::parse(&c.to_bytes());
    }
    if let Ok(h) = aac::AdtsHeader::parse(data) {
        let c = h.config();
        if let Ok(h2) = aac::AdtsHeader::for_config(&c, h.frame_len.saturating_sub(7)) {
            let mut b = BytesMut::new();
            h2.write(&mut b);
            assert!(aac::AdtsHeader::parse(&b).is_ok());
        }
    }
});
