#![no_main]
//! AV1 OBU and sequence header parsers never panic.

use arcly_core::media::codec::av1;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = av1::SequenceHeader::parse(data);
    let b = Bytes::copy_from_slice(data);
    for _ in av1::Obus::new(b.clone()) {}
    let _ = av1::split_temporal_units(b.clone());
    if let Ok(c) = av1::Av1Config::parse(&b) {
        let _ = av1::is_key_frame(&b, &c.seq);
        let _ = av1::Av1Config::parse(&c.to_bytes());
    }
    if let Ok(Some(c)) = av1::Av1Config::from_temporal_unit(&b) {
        let _ = av1::is_key_frame(&b, &c.seq);
    }
});
