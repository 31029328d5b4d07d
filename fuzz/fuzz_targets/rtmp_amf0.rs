//! AMF0 decoding of arbitrary bytes, and re-encoding what decodes.

#![no_main]

use arcly_rtmp::amf0;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = amf0::decode_all(data, 16) {
        let bytes = amf0::encode_all(&values);
        let again = amf0::decode_all(&bytes, 16);
        assert!(again.is_ok(), "re-encoded AMF0 must decode");
    }
});
