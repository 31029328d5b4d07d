//! Arbitrary bytes cut into RTP packets, into every depacketizer (H.264,
//! H.265, AAC with several AU header layouts, Opus): no panic; what comes
//! out is bounded, in canonical form (video access units are whole
//! length-prefixed NAL units the packetizer takes back), and the
//! configurations built from in-band parameter sets parse.
//!
//! Input: a mode byte (codec and fmtp variant), then packets as
//! `[flags][len u16 LE][len bytes]`; flags bit 0: packets were lost before
//! this one; bit 1: the bytes are a whole RTP packet (else a payload under
//! a made-up header whose marker is bit 2 and time stamp step bits 3..7).

#![no_main]

use arcly_core::frame::CodecId;
use arcly_core::media::codec::h264::AvcConfig;
use arcly_core::media::codec::h265::HevcConfig;
use arcly_core::media::codec::nal::LengthPrefixedNals;
use arcly_rtsp::payload::{Depacketizer, Packetizer, MAX_AU_BYTES};
use arcly_rtsp::rtp::{RtpHeader, RtpPacket, TimestampUnwrapper};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn fmtp(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let (codec, params) = match mode % 8 {
        0 => (CodecId::H264, ""),
        1 => (
            CodecId::H264,
            "packetization-mode=1;sprop-parameter-sets=Z2QAC6yyBQj8uAiAAAADAIAAABkHihUk,aOvDyyLA",
        ),
        2 => (CodecId::H265, ""),
        3 => (
            CodecId::H265,
            "sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8ugJA;sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZbpKTC//AAEAAWoMDAwIAAAAMAgAAADIQ=;sprop-pps=RAHAcYMS",
        ),
        4 => (CodecId::Aac, "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190"),
        5 => (CodecId::Aac, "mode=AAC-lbr;sizelength=6;indexlength=2;indexdeltalength=2;config=1210"),
        6 => (
            CodecId::Aac,
            "mode=generic;sizelength=16;indexlength=4;indexdeltalength=4;ctsdeltalength=5;dtsdeltalength=7;randomaccessindication=1;streamstateindication=3;auxiliarydatasizelength=9;config=1190",
        ),
        _ => (CodecId::Opus, "sprop-stereo=1"),
    };
    let Ok(mut d) = Depacketizer::new(codec, 48_000, 2, &fmtp(params)) else {
        return;
    };
    let mut unwrap = TimestampUnwrapper::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    let (mut bytes_in, mut bytes_out, mut packets) = (0usize, 0usize, 0usize);
    while rest.len() >= 3 {
        let flags = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let chunk = Bytes::copy_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
        let pkt = if flags & 2 != 0 {
            match RtpPacket::parse(chunk) {
                Ok(p) => p,
                Err(_) => continue,
            }
        } else {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(u32::from(flags >> 3) * 1500);
            RtpPacket {
                header: RtpHeader {
                    marker: flags & 4 != 0,
                    payload_type: 96,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 1,
                },
                payload: chunk,
            }
        };
        packets += 1;
        bytes_in += pkt.payload.len();
        let t = unwrap.extend(pkt.header.timestamp);
        let _ = d.push(&pkt, t, flags & 1 != 0);
        while let Some(au) = d.pop() {
            bytes_out += au.data.len();
            assert!(au.data.len() <= MAX_AU_BYTES);
            if codec.is_video() {
                assert!(!au.data.is_empty());
                assert!(LengthPrefixedNals::new(au.data.clone())
                    .all(|n| n.is_ok_and(|n| !n.is_empty())));
            }
            if matches!(codec, CodecId::H264 | CodecId::H265 | CodecId::Opus) {
                // What comes out, the packetizer takes.
                let mut p = Packetizer::new(codec, 96, 1, 0, 65_535).expect("packetizer");
                let mut out = Vec::new();
                p.packetize(au.timestamp as u32, &au.data, &mut out)
                    .expect("a depacketized access unit packetizes");
            }
        }
        if d.take_config_changed() {
            let c = d.config().expect("a changed config is known");
            match codec {
                CodecId::H264 => assert!(AvcConfig::parse(&c).is_ok()),
                CodecId::H265 => assert!(HevcConfig::parse(&c).is_ok()),
                _ => {}
            }
        }
    }
    // Length prefixes and rebuilt headers: at most 6 bytes out for the
    // smallest unit in (a 3-byte H.265 FU with one byte of data).
    assert!(bytes_out <= 6 * bytes_in + 6 * packets);
    let _ = d.dropped();
});
