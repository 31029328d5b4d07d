//! The payload formats: packets shaped as the RFCs draw them, the RTP that
//! GStreamer and ffmpeg sent in the committed captures, and round trips
//! (packetize, then depacketize, through loss and reordering).

use std::collections::BTreeMap;

use arcly_core::frame::{CodecId, TrackId, TrackInfo};
use arcly_core::media::codec::aac::AudioSpecificConfig;
use arcly_core::media::codec::h264::AvcConfig;
use arcly_core::media::codec::h265::HevcConfig;
use arcly_core::media::codec::nal::LengthPrefixedNals;
use arcly_core::media::codec::opus::OpusHead;
use arcly_core::time::Timescale;
use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::rtp::{ReorderBuffer, RtpHeader, RtpPacket, TimestampUnwrapper};

// ---------------------------------------------------------------- helpers

/// ffmpeg's `sprop-parameter-sets` (x264, High, level 1.1), as it
/// announced them in `testdata/ffmpeg5_publish_tcp.txt`.
const FFMPEG_SPROP: &str = "Z2QAC6yyBQj8uAiAAAADAIAAABkHihUk,aOvDyyLA";
/// GStreamer's H.265 parameter sets (x265, Main).
const GST_VPS: &str = "QAEMAf//AWAAAAMAkAAAAwAAAwA8ugJA";
const GST_SPS: &str = "QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZbpKTC//AAEAAWoMDAwIAAAAMAgAAADIQ=";
const GST_PPS: &str = "RAHAcYMS";

fn b64(s: &str) -> Bytes {
    Bytes::from(base64_decode(s).unwrap())
}

fn h264_sps() -> Bytes {
    b64(FFMPEG_SPROP.split(',').next().unwrap())
}

fn h264_pps() -> Bytes {
    b64(FFMPEG_SPROP.split(',').nth(1).unwrap())
}

fn fmtp_of(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
    RtpPacket {
        header: RtpHeader {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
        },
        payload: Bytes::copy_from_slice(payload),
    }
}

fn drain(d: &mut Depacketizer) -> Vec<AccessUnit> {
    core::iter::from_fn(|| d.pop()).collect()
}

/// An access unit in canonical form.
fn au(nals: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    for n in nals {
        b.put_u32(n.len() as u32);
        b.put_slice(n);
    }
    b.freeze()
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0x18];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

fn h264(fmtp: &str) -> Depacketizer {
    Depacketizer::new(CodecId::H264, 90_000, 1, &fmtp_of(fmtp)).unwrap()
}

fn h265(fmtp: &str) -> Depacketizer {
    Depacketizer::new(CodecId::H265, 90_000, 1, &fmtp_of(fmtp)).unwrap()
}

fn aac_hbr(config: &str) -> Depacketizer {
    let f = format!(
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}"
    );
    Depacketizer::new(CodecId::Aac, 48_000, 2, &fmtp_of(&f)).unwrap()
}

// ---------------------------------------------------------------- H.264

const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
const SLICE: &[u8] = &[0x41, 0x9a, 0x02, 0x04];

#[test]
fn h264_stap_a_with_parameter_sets_and_idr() {
    let mut d = h264("packetization-mode=1");
    assert_eq!(d.config(), None);
    assert!(!d.take_config_changed());
    let (sps, pps) = (h264_sps(), h264_pps());
    d.push(
        &pkt(1, 9000, true, &stap_a(&[&sps, &pps, IDR])),
        9000,
        false,
    )
    .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].timestamp, 9000);
    assert!(out[0].key);
    assert_eq!(out[0].data, au(&[&sps, &pps, IDR]));
    assert!(d.take_config_changed());
    assert!(!d.take_config_changed());
    let c = AvcConfig::parse(&d.config().unwrap()).unwrap();
    assert_eq!(c.params().unwrap().codec_string.as_str(), "avc1.64000b");
    assert_eq!((c.sps, c.pps), (vec![sps.clone()], vec![pps.clone()]));
    // The same sets again change nothing.
    d.push(
        &pkt(2, 12000, true, &stap_a(&[&sps, &pps, IDR])),
        12000,
        false,
    )
    .unwrap();
    assert_eq!(drain(&mut d).len(), 1);
    assert!(!d.take_config_changed());
}

#[test]
fn h264_fu_a_start_middle_end() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    assert!(d.take_config_changed());
    assert!(d.config().is_some());
    // An IDR of 1 + 9 bytes in three FU-A: indicator NRI 3 type 28,
    // headers S|5, 5, E|5.
    let body: Vec<u8> = (0x88..=0x90).collect();
    d.push(
        &pkt(7, 0, false, &[&[0x7C, 0x85][..], &body[..3]].concat()),
        0,
        false,
    )
    .unwrap();
    d.push(
        &pkt(8, 0, false, &[&[0x7C, 0x05][..], &body[3..6]].concat()),
        0,
        false,
    )
    .unwrap();
    assert!(d.pop().is_none());
    d.push(
        &pkt(9, 0, true, &[&[0x7C, 0x45][..], &body[6..]].concat()),
        0,
        false,
    )
    .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert!(out[0].key);
    assert_eq!(out[0].data, au(&[&[&[0x65][..], &body].concat()]));
    assert!(!d.take_config_changed());
}

#[test]
fn h264_loss_drops_until_the_next_key_frame() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    let frag = |seq, ts, h: u8, marker| pkt(seq, ts, marker, &[0x5C, h, 1, 2, 3]);
    d.push(&pkt(1, 0, true, IDR), 0, false).unwrap();
    d.push(&pkt(2, 3000, true, SLICE), 3000, false).unwrap();
    assert_eq!(drain(&mut d).len(), 2);
    // A delta frame in FU-A whose middle is lost.
    d.push(&frag(3, 6000, 0x81, false), 6000, false).unwrap();
    d.push(&frag(5, 6000, 0x41, true), 6000, true).unwrap();
    // Whole delta frames after it are dropped too.
    d.push(&pkt(6, 9000, true, SLICE), 9000, false).unwrap();
    // An FU-A middle without its start is an error, and breaks the frame.
    assert!(matches!(
        d.push(&frag(7, 12000, 0x01, false), 12000, false),
        Err(PayloadError::Malformed { sequence: 7, .. })
    ));
    d.push(&frag(8, 12000, 0x41, true), 12000, false).unwrap();
    assert!(d.pop().is_none());
    // The next IDR resumes.
    d.push(&pkt(9, 15000, true, IDR), 15000, false).unwrap();
    d.push(&pkt(10, 18000, true, SLICE), 18000, false).unwrap();
    let out = drain(&mut d);
    assert_eq!(
        out.iter().map(|a| (a.timestamp, a.key)).collect::<Vec<_>>(),
        [(15000, true), (18000, false)]
    );
    assert_eq!(d.dropped(), 3);
}

#[test]
fn h264_a_lost_packet_may_have_been_the_head_of_the_next_frame() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    d.push(&pkt(1, 0, true, IDR), 0, false).unwrap();
    // Packet 2 (the first FU-A of a new IDR) is lost: the rest of that
    // IDR must not come out as a picture.
    d.push(&pkt(3, 3000, true, &[0x7C, 0x45, 9, 9]), 3000, true)
        .unwrap();
    assert_eq!(drain(&mut d).len(), 1);
    // Unless an access unit delimiter shows where the next one starts.
    let aud: &[u8] = &[0x09, 0xF0];
    d.push(&pkt(5, 6000, true, &stap_a(&[aud, IDR])), 6000, true)
        .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, au(&[aud, IDR]));
}

#[test]
fn a_stream_joined_mid_picture() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    // The second slice of an IDR (first_mb_in_slice 5: bits 00110) and its
    // end: not a whole picture.
    d.push(&pkt(1, 0, false, &[0x65, 0x30, 1]), 0, false)
        .unwrap();
    d.push(&pkt(2, 0, true, &[0x65, 0x30, 2]), 0, false)
        .unwrap();
    assert!(d.pop().is_none());
    assert_eq!(d.dropped(), 1);
    d.push(&pkt(3, 3000, true, IDR), 3000, false).unwrap();
    assert_eq!(drain(&mut d).len(), 1);
    // The same in FU-A, and for H.265 (first_slice_segment_in_pic_flag 0).
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    d.push(&pkt(1, 0, false, &[0x7C, 0x85, 0x30]), 0, false)
        .unwrap();
    d.push(&pkt(2, 0, true, &[0x7C, 0x45, 0x30]), 0, false)
        .unwrap();
    assert!(d.pop().is_none());
    let mut d = h265("");
    d.push(&pkt(1, 0, true, &[0x26, 0x01, 0x40, 1]), 0, false)
        .unwrap();
    assert!(d.pop().is_none());
    d.push(&pkt(2, 3000, true, HEVC_IDR), 3000, false).unwrap();
    assert_eq!(drain(&mut d).len(), 1);
}

#[test]
fn h264_boundaries_without_the_marker() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    // A camera that never sets the marker: the time stamp tells.
    d.push(&pkt(1, 0, false, IDR), 0, false).unwrap();
    d.push(&pkt(2, 0, false, SLICE), 0, false).unwrap();
    assert!(d.pop().is_none());
    d.push(&pkt(3, 3000, false, SLICE), 3000, false).unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, au(&[IDR, SLICE]));
    // An access unit delimiter tells too, even with the same time stamp.
    d.push(&pkt(4, 3000, false, &[0x09, 0x10]), 3000, false)
        .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].timestamp, out[0].key), (3000, false));
}

#[test]
fn h264_parameter_sets_alone_go_with_the_next_picture() {
    let mut d = h264("packetization-mode=1");
    let (sps, pps) = (h264_sps(), h264_pps());
    // Some cameras send SPS and PPS with the marker set, or with a time
    // stamp of their own.
    d.push(&pkt(1, 100, false, &sps), 100, false).unwrap();
    d.push(&pkt(2, 100, true, &pps), 100, false).unwrap();
    assert!(d.pop().is_none());
    assert!(d.take_config_changed());
    d.push(&pkt(3, 3000, true, IDR), 3000, false).unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].timestamp, 3000);
    assert_eq!(out[0].data, au(&[&sps, &pps, IDR]));
}

#[test]
fn h264_the_delimiter_goes_first() {
    let mut d = h264("packetization-mode=1");
    let (sps, pps) = (h264_sps(), h264_pps());
    let aud: &[u8] = &[0x09, 0x10];
    // Parameter sets put before the delimiter (as a server that adds them
    // to a key frame may), in packets of their own.
    for (seq, n) in [&sps[..], &pps, aud, &[0x06, 5, 1, 0x80]]
        .into_iter()
        .enumerate()
    {
        d.push(&pkt(seq as u16, 0, false, n), 0, false).unwrap();
    }
    d.push(&pkt(4, 0, true, IDR), 0, false).unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].data,
        au(&[aud, &sps, &pps, &[0x06, 5, 1, 0x80], IDR])
    );
}

#[test]
fn h264_a_new_sps_changes_the_config() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    assert!(d.take_config_changed());
    let before = d.config().unwrap();
    // The same id (0), another resolution: replaces the old SPS.
    let sps2 = b64("Z0LADdoFB+wFqDAwNSgAAAMACAAAAwGUeKFV");
    d.push(&pkt(1, 0, true, &stap_a(&[&sps2, IDR])), 0, false)
        .unwrap();
    assert!(d.take_config_changed());
    let c = AvcConfig::parse(&d.config().unwrap()).unwrap();
    assert_ne!(d.config().unwrap(), before);
    assert_eq!(c.sps, vec![sps2]);
    assert_eq!(c.pps, vec![h264_pps()]);
}

#[test]
fn h264_refuses_what_it_does_not_read_and_stays_usable() {
    assert!(matches!(
        Depacketizer::new(CodecId::H264, 90_000, 1, &fmtp_of("packetization-mode=2")),
        Err(PayloadError::Parameter {
            name: "packetization-mode",
            ..
        })
    ));
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    for (p, what) in [
        (vec![0x19, 0, 0, 0, 1, 0x65], "STAP-B"),
        (vec![0x1A, 0, 0], "MTAP16"),
        (vec![0x1D, 0x85, 0, 0], "FU-B"),
    ] {
        assert!(
            matches!(
                d.push(&pkt(1, 0, true, &p), 0, false),
                Err(PayloadError::UnsupportedPacket { sequence: 1, .. })
            ),
            "{what}"
        );
    }
    for p in [
        vec![],
        vec![0x00],
        vec![0x1F, 1],
        vec![0x18, 0, 9, 0x65],
        vec![0x18, 0, 0],
        vec![0x18],
        vec![0x18, 0, 2, 0x78, 0],
        vec![0x1C],
        vec![0x1C, 0xC5, 1],
        vec![0x1C, 0x98, 1],
    ] {
        assert!(
            matches!(
                d.push(&pkt(2, 0, true, &p), 0, false),
                Err(PayloadError::Malformed { sequence: 2, .. })
            ),
            "{p:?}"
        );
    }
    assert!(d.pop().is_none());
    d.push(&pkt(3, 3000, true, IDR), 3000, false).unwrap();
    assert_eq!(drain(&mut d).len(), 1);
}

#[test]
fn h264_bounds_the_access_unit() {
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    let mut chunk = vec![0u8; 60_000];
    chunk[0] = 0x80;
    let mut start = vec![0x7C, 0x85];
    start.extend_from_slice(&chunk);
    d.push(&pkt(0, 0, false, &start), 0, false).unwrap();
    let mut err = None;
    for i in 1..200u16 {
        let mut p = vec![0x7C, 0x05];
        p.extend_from_slice(&chunk);
        if let Err(e) = d.push(&pkt(i, 0, false, &p), 0, false) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(
        err,
        Some(PayloadError::TooLarge {
            limit: MAX_AU_BYTES,
            ..
        })
    ));
    d.push(&pkt(500, 0, true, &[0x7C, 0x45, 1]), 0, false)
        .unwrap();
    assert!(d.pop().is_none());
    // Many tiny NAL units.
    let mut d = h264(&format!("sprop-parameter-sets={FFMPEG_SPROP}"));
    let many: Vec<&[u8]> = vec![&[0x06, 1]; 600];
    d.push(&pkt(1, 0, false, &stap_a(&many)), 0, false).unwrap();
    assert!(matches!(
        d.push(&pkt(2, 0, true, &stap_a(&many)), 0, false),
        Err(PayloadError::TooManyNals { .. })
    ));
    assert!(d.pop().is_none());
}

// ---------------------------------------------------------------- H.265

const HEVC_IDR: &[u8] = &[0x26, 0x01, 0xaf, 0x06, 0xb8];
const HEVC_TRAIL: &[u8] = &[0x02, 0x01, 0xd0, 0x09];

fn ap(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0x60, 0x01];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

#[test]
fn h265_aggregation_packet_with_parameter_sets() {
    let mut d = h265("");
    assert_eq!(d.config(), None);
    let (vps, sps, pps) = (b64(GST_VPS), b64(GST_SPS), b64(GST_PPS));
    d.push(
        &pkt(1, 0, true, &ap(&[&vps, &sps, &pps, HEVC_IDR])),
        0,
        false,
    )
    .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert!(out[0].key);
    assert_eq!(out[0].data, au(&[&vps, &sps, &pps, HEVC_IDR]));
    assert!(d.take_config_changed());
    let c = HevcConfig::parse(&d.config().unwrap()).unwrap();
    assert_eq!(c.nals(33).collect::<Vec<_>>(), [&sps]);
    assert_eq!(c.nals(32).collect::<Vec<_>>(), [&vps]);
    assert_eq!(c.nals(34).collect::<Vec<_>>(), [&pps]);
}

#[test]
fn h265_fragmentation_units() {
    let mut d = h265(&format!(
        "sprop-vps={GST_VPS};sprop-sps={GST_SPS};sprop-pps={GST_PPS}"
    ));
    assert!(d.take_config_changed());
    // A CRA (21) in three FUs: payload header type 49 with the NAL's
    // LayerId/TID, FU header S|21, 21, E|21.
    let fu = |h: u8, data: &[u8]| [&[0x62, 0x01, h][..], data].concat();
    d.push(&pkt(1, 0, false, &fu(0x80 | 21, &[0x81, 2])), 0, false)
        .unwrap();
    d.push(&pkt(2, 0, false, &fu(21, &[3])), 0, false).unwrap();
    d.push(&pkt(3, 0, true, &fu(0x40 | 21, &[4, 5])), 0, false)
        .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert!(out[0].key);
    assert_eq!(out[0].data, au(&[&[0x2A, 0x01, 0x81, 2, 3, 4, 5]]));
    // A trailing picture, then a loss inside the next one.
    d.push(&pkt(4, 3000, true, HEVC_TRAIL), 3000, false)
        .unwrap();
    d.push(&pkt(5, 6000, false, &fu(0x80 | 1, &[1])), 6000, false)
        .unwrap();
    d.push(&pkt(7, 6000, true, &fu(0x40 | 1, &[1])), 6000, true)
        .unwrap();
    d.push(&pkt(8, 9000, true, HEVC_TRAIL), 9000, false)
        .unwrap();
    d.push(&pkt(9, 12000, true, HEVC_IDR), 12000, false)
        .unwrap();
    let out = drain(&mut d);
    assert_eq!(
        out.iter().map(|a| (a.timestamp, a.key)).collect::<Vec<_>>(),
        [(3000, false), (12000, true)]
    );
    assert_eq!(d.dropped(), 2);
}

#[test]
fn h265_refuses_what_it_does_not_read() {
    assert!(matches!(
        Depacketizer::new(CodecId::H265, 90_000, 1, &fmtp_of("sprop-max-don-diff=2")),
        Err(PayloadError::Parameter {
            name: "sprop-max-don-diff",
            ..
        })
    ));
    let mut d = h265("");
    assert!(matches!(
        d.push(&pkt(1, 0, true, &[0x64, 0x01, 0, 0]), 0, false),
        Err(PayloadError::UnsupportedPacket {
            packet_type: 50,
            ..
        })
    ));
    for p in [
        vec![0x26],
        vec![0x7E, 0x01],
        vec![0x60, 0x01],
        vec![0x60, 0x01, 0, 1, 0x26],
        vec![0x60, 0x01, 0, 9, 0x26, 1],
        vec![0x62, 0x01],
        vec![0x62, 0x01, 0xC1],
        vec![0x62, 0x01, 0x80 | 49],
    ] {
        assert!(
            matches!(
                d.push(&pkt(2, 0, true, &p), 0, false),
                Err(PayloadError::Malformed { .. })
            ),
            "{p:?}"
        );
    }
}

// ---------------------------------------------------------------- AAC

#[test]
fn aac_two_access_units_in_one_packet() {
    let mut d = aac_hbr("1190");
    assert!(d.take_config_changed());
    assert_eq!(&d.config().unwrap()[..], &[0x11, 0x90]);
    // AU-headers-length 32 bits; sizes 3 and 2, index 0 and delta 0.
    let p = [
        0x00, 0x20, 0x00, 0x18, 0x00, 0x10, 0xA1, 0xA2, 0xA3, 0xB1, 0xB2,
    ];
    d.push(&pkt(1, 48_000, true, &p), 48_000, false).unwrap();
    let out = drain(&mut d);
    assert_eq!(
        out,
        [
            AccessUnit {
                timestamp: 48_000,
                key: true,
                data: Bytes::from_static(&[0xA1, 0xA2, 0xA3]),
            },
            AccessUnit {
                timestamp: 48_000 + 1024,
                key: true,
                data: Bytes::from_static(&[0xB1, 0xB2]),
            },
        ]
    );
    // An index delta of 1 skips one frame's time.
    let p = [0x00, 0x20, 0x00, 0x08, 0x00, 0x09, 0xC1, 0xD1];
    d.push(&pkt(2, 96_000, true, &p), 96_000, false).unwrap();
    let ts: Vec<i64> = drain(&mut d).iter().map(|a| a.timestamp).collect();
    assert_eq!(ts, [96_000, 96_000 + 2048]);
}

#[test]
fn aac_fragmented_access_unit_and_loss() {
    let mut d = aac_hbr("1190");
    // One AU of 5 bytes: header size 5 in every fragment.
    let frag = |data: &[u8]| [&[0x00, 0x10, 0x00, 0x28][..], data].concat();
    d.push(&pkt(1, 0, false, &frag(&[1, 2])), 0, false).unwrap();
    d.push(&pkt(2, 0, false, &frag(&[3])), 0, false).unwrap();
    assert!(d.pop().is_none());
    d.push(&pkt(3, 0, true, &frag(&[4, 5])), 0, false).unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data[..], &[1, 2, 3, 4, 5]);
    // The middle of the next one is lost: it is dropped, and the whole
    // access unit after it is not.
    d.push(&pkt(4, 1024, false, &frag(&[1, 2])), 1024, false)
        .unwrap();
    d.push(&pkt(6, 1024, true, &frag(&[4, 5])), 1024, true)
        .unwrap();
    d.push(
        &pkt(7, 2048, true, &[0x00, 0x10, 0x00, 0x08, 9]),
        2048,
        false,
    )
    .unwrap();
    let out = drain(&mut d);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].timestamp, &out[0].data[..]), (2048, &[9u8][..]));
    assert_eq!(d.dropped(), 2);
    // A last fragment short of the size is an error.
    d.push(&pkt(8, 3072, false, &frag(&[1])), 3072, false)
        .unwrap();
    assert!(matches!(
        d.push(&pkt(9, 3072, true, &frag(&[2])), 3072, false),
        Err(PayloadError::Malformed { sequence: 9, .. })
    ));
    assert!(d.pop().is_none());
}

#[test]
fn aac_lbr_and_malformed_headers() {
    let f = fmtp_of("mode=AAC-lbr;config=1210");
    let mut d = Depacketizer::new(CodecId::Aac, 44_100, 2, &f).unwrap();
    // 8-bit headers (6 size + 2 index): sizes 2 and 1.
    let p = [0x00, 0x10, 0x08, 0x04, 7, 7, 8];
    d.push(&pkt(1, 0, true, &p), 0, false).unwrap();
    assert_eq!(drain(&mut d).len(), 2);
    let mut d = aac_hbr("1190");
    for p in [
        &[0x00][..],
        &[0x00, 0x20, 0x00],
        &[0x00, 0x00, 1, 2],
        &[0x00, 0x10, 0x00, 0x00, 1],
        &[0x00, 0x20, 0x00, 0x18, 0x00, 0x18, 1, 2, 3, 4],
        &[0x00, 0x0c, 0x00, 0x10, 1],
    ] {
        assert!(d.push(&pkt(2, 0, true, p), 0, false).is_err(), "{p:?}");
    }
    assert!(d.pop().is_none());
    assert!(matches!(
        Depacketizer::new(CodecId::Aac, 48_000, 2, &fmtp_of("config=zz")),
        Err(PayloadError::Parameter { name: "config", .. })
    ));
    assert!(matches!(
        Depacketizer::new(CodecId::Aac, 48_000, 2, &fmtp_of("sizelength=40")),
        Err(PayloadError::Parameter {
            name: "sizelength",
            ..
        })
    ));
    // No config: AAC LC at the rtpmap's rate and channels.
    let d = Depacketizer::new(CodecId::Aac, 44_100, 2, &[]).unwrap();
    let asc = AudioSpecificConfig::parse(&d.config().unwrap()).unwrap();
    assert_eq!((asc.sample_rate, asc.channels()), (44_100, 2));
}

#[test]
fn aac_timestamps_follow_the_rtp_clock() {
    // HE-AAC signalled with a 24 kHz core and a 48 kHz RTP clock: each
    // access unit spans 2048 ticks.
    let core = AudioSpecificConfig::lc(24_000, 2).to_bytes();
    let hex: String = core.iter().map(|b| format!("{b:02x}")).collect();
    let f = fmtp_of(&format!("mode=AAC-hbr;config={hex}"));
    let mut d = Depacketizer::new(CodecId::Aac, 48_000, 2, &f).unwrap();
    let p = [0x00, 0x20, 0x00, 0x08, 0x00, 0x08, 1, 2];
    d.push(&pkt(1, 0, true, &p), 0, false).unwrap();
    let ts: Vec<i64> = drain(&mut d).iter().map(|a| a.timestamp).collect();
    assert_eq!(ts, [0, 2048]);
}

// ---------------------------------------------------------------- Opus

#[test]
fn opus_one_packet_one_frame() {
    let mut d = Depacketizer::new(CodecId::Opus, 48_000, 2, &fmtp_of("sprop-stereo=1")).unwrap();
    assert!(d.take_config_changed());
    let head = OpusHead::parse(&d.config().unwrap()).unwrap();
    assert_eq!((head.channels, head.pre_skip), (2, 0));
    d.push(&pkt(1, 960, false, &[0xFC, 1, 2]), 960, true)
        .unwrap();
    let out = drain(&mut d);
    assert_eq!(
        out,
        [AccessUnit {
            timestamp: 960,
            key: true,
            data: Bytes::from_static(&[0xFC, 1, 2]),
        }]
    );
    assert!(d.push(&pkt(2, 1920, false, &[]), 1920, false).is_err());
    let d = Depacketizer::new(CodecId::Opus, 48_000, 2, &fmtp_of("sprop-stereo=0")).unwrap();
    assert_eq!(OpusHead::parse(&d.config().unwrap()).unwrap().channels, 1);
}

#[test]
fn unsupported_codecs_are_refused() {
    assert_eq!(
        Depacketizer::new(CodecId::Vp9, 90_000, 1, &[]).err(),
        Some(PayloadError::UnsupportedCodec(CodecId::Vp9))
    );
    assert!(Packetizer::new(CodecId::Mp3, 96, 1, 0, 1400).is_err());
}

// ---------------------------------------------------------------- Packetizer

fn parse_all(packets: &[Bytes]) -> Vec<RtpPacket> {
    packets
        .iter()
        .map(|p| RtpPacket::parse(p.clone()).unwrap())
        .collect()
}

#[test]
fn packetizer_checks_its_input() {
    assert_eq!(
        Packetizer::new(CodecId::H264, 96, 1, 0, 63).err(),
        Some(PayloadError::Mtu(63))
    );
    assert_eq!(
        Packetizer::new(CodecId::H264, 128, 1, 0, 1400).err(),
        Some(PayloadError::PayloadType(128))
    );
    let mut p = Packetizer::new(CodecId::H264, 96, 1, 65_535, 64).unwrap();
    let mut out = Vec::new();
    // A frame cut inside a length prefix, or with an RTP-only NAL type.
    for bad in [
        Bytes::from_static(&[0, 0, 0, 9, 1]),
        au(&[&[0x7C, 1]]),
        au(&[IDR, &[0x18]]),
    ] {
        assert!(matches!(
            p.packetize(5, &bad, &mut out),
            Err(PayloadError::Frame { timestamp: 5, .. })
        ));
    }
    assert!(out.is_empty());
    assert_eq!(p.next_sequence(), 65_535);
    let mut a = Packetizer::new(CodecId::Aac, 97, 1, 0, 1400).unwrap();
    assert!(a.packetize(0, &Bytes::new(), &mut out).is_err());
    assert!(a
        .packetize(0, &Bytes::from(vec![0; 8192]), &mut out)
        .is_err());
    let mut o = Packetizer::new(CodecId::Opus, 97, 1, 0, 100).unwrap();
    assert!(o.packetize(0, &Bytes::from(vec![1; 89]), &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn packetizer_h264_single_and_fu_a() {
    let mut p = Packetizer::new(CodecId::H264, 96, 0xABCD, 65_534, 64).unwrap();
    let big: Vec<u8> = [0x65].into_iter().chain(0..120u8).collect();
    let mut out = Vec::new();
    p.packetize(1234, &au(&[&h264_sps(), &big]), &mut out)
        .unwrap();
    let pk = parse_all(&out);
    assert!(out.iter().all(|b| b.len() <= 64));
    // The SPS alone, then the IDR in 121 / 50 = 3 FU-A.
    assert_eq!(pk.len(), 4);
    assert_eq!(pk[0].payload, h264_sps());
    assert_eq!(&pk[1].payload[..2], &[0x7C, 0x85]);
    assert_eq!(&pk[2].payload[..2], &[0x7C, 0x05]);
    assert_eq!(&pk[3].payload[..2], &[0x7C, 0x45]);
    assert_eq!(
        pk.iter()
            .map(|p| (
                p.header.sequence,
                p.header.marker,
                p.header.timestamp,
                p.header.ssrc
            ))
            .collect::<Vec<_>>(),
        [
            (65_534, false, 1234, 0xABCD),
            (65_535, false, 1234, 0xABCD),
            (0, false, 1234, 0xABCD),
            (1, true, 1234, 0xABCD)
        ]
    );
    assert_eq!(p.next_sequence(), 2);
}

#[test]
fn packetizer_h265_fu_and_aac_fragments() {
    let mut p = Packetizer::new(CodecId::H265, 96, 1, 0, 64).unwrap();
    let big: Vec<u8> = [0x26, 0x01].into_iter().chain(0..100u8).collect();
    let mut out = Vec::new();
    p.packetize(0, &au(&[&big]), &mut out).unwrap();
    let pk = parse_all(&out);
    // 100 bytes after the header in fragments of 64 - 12 - 3 = 49.
    assert_eq!(pk.len(), 3);
    assert_eq!(&pk[0].payload[..3], &[0x62, 0x01, 0x80 | 19]);
    assert_eq!(&pk[2].payload[..3], &[0x62, 0x01, 0x40 | 19]);
    assert!(pk[2].header.marker && !pk[0].header.marker);

    let mut p = Packetizer::new(CodecId::Aac, 97, 1, 0, 64).unwrap();
    let frame = Bytes::from((0..100u8).collect::<Vec<_>>());
    out.clear();
    p.packetize(0, &frame, &mut out).unwrap();
    let pk = parse_all(&out);
    // 100 bytes in fragments of 64 - 12 - 4 = 48, each with the header of
    // the whole AU (size 100 << 3 = 0x0320).
    assert_eq!(pk.len(), 3);
    for k in &pk {
        assert_eq!(&k.payload[..4], &[0x00, 0x10, 0x03, 0x20]);
    }
    assert_eq!(
        pk.iter().map(|k| k.header.marker).collect::<Vec<_>>(),
        [false, false, true]
    );
}

// ---------------------------------------------------------------- SDP

fn track(codec: CodecId, config: Bytes) -> TrackInfo {
    TrackInfo::new(TrackId(0), codec, Timescale::MPEG, config)
}

#[test]
fn sdp_parameters_round_trip_through_the_depacketizer() {
    let avcc = AvcConfig::from_parameter_sets(vec![h264_sps()], vec![h264_pps()])
        .unwrap()
        .to_bytes();
    let t = track(CodecId::H264, avcc.clone());
    assert_eq!(rtpmap(&t).as_deref(), Some("H264/90000"));
    let f = fmtp(&t).unwrap();
    assert_eq!(
        f,
        format!("packetization-mode=1;profile-level-id=64000b;sprop-parameter-sets={FFMPEG_SPROP}")
    );
    assert_eq!(clock_rate(&t), 90_000);
    assert_eq!(h264(&f).config(), Some(avcc));
    assert_eq!(
        fmtp(&track(CodecId::H264, Bytes::new())).as_deref(),
        Some("packetization-mode=1")
    );

    let hvcc =
        HevcConfig::from_parameter_sets(vec![b64(GST_VPS)], vec![b64(GST_SPS)], vec![b64(GST_PPS)])
            .unwrap()
            .to_bytes();
    let t = track(CodecId::H265, hvcc.clone());
    assert_eq!(rtpmap(&t).as_deref(), Some("H265/90000"));
    let f = fmtp(&t).unwrap();
    assert_eq!(
        f,
        format!("sprop-vps={GST_VPS};sprop-sps={GST_SPS};sprop-pps={GST_PPS}")
    );
    assert_eq!(h265(&f).config(), Some(hvcc));
    assert_eq!(fmtp(&track(CodecId::H265, Bytes::new())), None);

    let t = track(CodecId::Aac, Bytes::from_static(&[0x11, 0x90]));
    assert_eq!(rtpmap(&t).as_deref(), Some("MPEG4-GENERIC/48000/2"));
    assert_eq!(clock_rate(&t), 48_000);
    assert_eq!(
        fmtp(&t).as_deref(),
        Some("streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190")
    );
    assert_eq!(rtpmap(&track(CodecId::Aac, Bytes::new())), None);

    let t = track(CodecId::Opus, OpusHead::new(2, 312, 48_000).to_bytes());
    assert_eq!(rtpmap(&t).as_deref(), Some("opus/48000/2"));
    assert_eq!(fmtp(&t).as_deref(), Some("sprop-stereo=1"));
    assert_eq!(clock_rate(&t), 48_000);
    let t = track(CodecId::Opus, OpusHead::new(1, 312, 48_000).to_bytes());
    assert_eq!(fmtp(&t), None);
    assert_eq!(rtpmap(&track(CodecId::Vp9, Bytes::new())), None);
}

#[test]
fn base64_tolerates_missing_padding_and_white_space() {
    assert_eq!(
        base64_decode("aOvjyyLA").unwrap(),
        [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]
    );
    assert_eq!(
        base64_decode(" aM48 gA== ").unwrap(),
        [0x68, 0xce, 0x3c, 0x80]
    );
    assert_eq!(base64_decode("aM48gA").unwrap(), [0x68, 0xce, 0x3c, 0x80]);
    assert_eq!(base64_decode("aM4*"), None);
    assert_eq!(base64_encode(&[0x68, 0xce, 0x3c, 0x80]), "aM48gA==");
    assert_eq!(base64_nals("aM48gA==,,!!,aOvjyyLA", 8).len(), 2);
}

// ---------------------------------------------------------------- captures

/// The interleaved frames `(channel, data)` one direction of a committed
/// capture (`record_proxy.py`: `DIR MICROS HEX` lines) carried.
fn interleaved(capture: &str, direction: &str) -> Vec<(u8, Bytes)> {
    let mut data = Vec::new();
    for line in capture.lines() {
        let mut it = line.split_whitespace();
        let (Some(d), Some(_), Some(hex)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if d == direction {
            data.extend(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()),
            );
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'$' {
            if i + 4 > data.len() {
                break;
            }
            let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
            if i + 4 + len > data.len() {
                break;
            }
            out.push((
                data[i + 1],
                Bytes::copy_from_slice(&data[i + 4..i + 4 + len]),
            ));
            i += 4 + len;
            continue;
        }
        let Some(end) = data[i..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&data[i..i + end]).to_ascii_lowercase();
        let body = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        i += end + 4 + body;
    }
    out
}

/// Feeds the RTP of one channel to `d`: the access units, and how many
/// packets had the marker set and how many distinct time stamps there were.
fn replay(
    d: &mut Depacketizer,
    frames: &[(u8, Bytes)],
    channel: u8,
) -> (Vec<AccessUnit>, usize, usize) {
    let mut unwrap = TimestampUnwrapper::new();
    let mut out = Vec::new();
    let mut marked = 0;
    let mut stamps = std::collections::BTreeSet::new();
    for (c, data) in frames {
        if *c != channel {
            continue;
        }
        let p = RtpPacket::parse(data.clone()).unwrap();
        marked += usize::from(p.header.marker);
        stamps.insert(p.header.timestamp);
        let ts = unwrap.extend(p.header.timestamp);
        d.push(&p, ts, false).unwrap();
        out.extend(drain(d));
    }
    (out, marked, stamps.len())
}

fn check_video(aus: &[AccessUnit]) {
    assert!(aus[0].key);
    for w in aus.windows(2) {
        assert!(w[1].timestamp > w[0].timestamp);
    }
    for a in aus {
        assert!(LengthPrefixedNals::new(a.data.clone()).all(|n| n.is_ok_and(|n| !n.is_empty())));
    }
}

#[test]
fn gstreamer_h264_and_aac() {
    let frames = interleaved(
        include_str!("../../testdata/gst_server_h264aac_tcp.txt"),
        "s2c",
    );
    let mut v = h264("packetization-mode=1;sprop-parameter-sets=Z0LADdoFB+wFqDAwNSgAAAMACAAAAwGUeKFV,aM48gA==;profile-level-id=42c00d;level-asymmetry-allowed=1");
    let (aus, marked, stamps) = replay(&mut v, &frames, 0);
    assert_eq!((marked, stamps), (51, 51));
    assert_eq!(aus.len(), 51);
    check_video(&aus);
    assert_eq!(v.dropped(), 0);
    assert!(AvcConfig::parse(&v.config().unwrap())
        .unwrap()
        .params()
        .is_ok());

    let mut a = aac_hbr("118856e500");
    let (aus, marked, _) = replay(&mut a, &frames, 2);
    assert_eq!(aus.len(), marked);
    assert!(aus
        .iter()
        .all(|a| !a.data.is_empty() && a.data.len() < 2048));
    for w in aus.windows(2) {
        assert_eq!(w[1].timestamp - w[0].timestamp, 1024);
    }
}

#[test]
fn gstreamer_h265() {
    let frames = interleaved(
        include_str!("../../testdata/gst_server_h265_tcp.txt"),
        "s2c",
    );
    let mut v = h265("sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8ugJA;sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZbpKTC//AAEAAWoMDAwIAAAAMAgAAADIQ=;sprop-pps=RAHAcYMS");
    let (aus, marked, stamps) = replay(&mut v, &frames, 0);
    assert_eq!((marked, stamps), (53, 53));
    assert_eq!(aus.len(), 53);
    check_video(&aus);
    assert_eq!(v.dropped(), 0);
    assert!(HevcConfig::parse(&v.config().unwrap())
        .unwrap()
        .params()
        .is_ok());
}

#[test]
fn gstreamer_opus() {
    let frames = interleaved(
        include_str!("../../testdata/gst_server_opus_tcp.txt"),
        "s2c",
    );
    let mut a = Depacketizer::new(
        CodecId::Opus,
        48_000,
        2,
        &fmtp_of("sprop-stereo=0;sprop-maxcapturerate=48000"),
    )
    .unwrap();
    let (aus, _, stamps) = replay(&mut a, &frames, 2);
    assert_eq!(aus.len(), stamps);
    assert_eq!(aus.len(), 101);
    for w in aus.windows(2) {
        assert_eq!(w[1].timestamp - w[0].timestamp, 960);
    }
}

#[test]
fn ffmpeg_publishes_h264_and_aac() {
    let frames = interleaved(
        include_str!("../../testdata/ffmpeg5_publish_tcp.txt"),
        "c2s",
    );
    let mut v = h264("packetization-mode=1; sprop-parameter-sets=Z2QAC6yyBQj8uAiAAAADAIAAABkHihUk,aOvDyyLA; profile-level-id=64000B");
    let (aus, marked, _) = replay(&mut v, &frames, 0);
    assert_eq!(aus.len(), marked);
    check_video(&aus);
    let mut a = Depacketizer::new(
        CodecId::Aac,
        44_100,
        1,
        &fmtp_of("profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=120856E500"),
    )
    .unwrap();
    let (aus, marked, _) = replay(&mut a, &frames, 2);
    // ffmpeg puts several access units in a packet.
    assert!(aus.len() > marked);
    for w in aus.windows(2) {
        assert_eq!(w[1].timestamp - w[0].timestamp, 1024);
    }
}

#[test]
fn gstreamer_publishes_high_444_h264() {
    let frames = interleaved(
        include_str!("../../testdata/gst_rtspclientsink_publish_tcp.txt"),
        "c2s",
    );
    let mut v = h264("packetization-mode=1;sprop-parameter-sets=Z/QAC5DZZAoR+JwFqDAwMgAAAwACAAADAGUeKFSQ,aOvMRIRA");
    let (aus, marked, _) = replay(&mut v, &frames, 2);
    assert_eq!(aus.len(), marked);
    check_video(&aus);
}

// ---------------------------------------------------------------- round trips

/// A frame sent: its RTP time stamp, payload and whether it is a key
/// frame.
#[derive(Clone)]
struct Sent {
    ts: u32,
    data: Bytes,
    key: bool,
}

impl core::fmt::Debug for Sent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Sent({}, {} bytes, key {})",
            self.ts,
            self.data.len(),
            self.key
        )
    }
}

fn frames_strategy(codec: CodecId) -> impl Strategy<Value = Vec<Sent>> {
    let max = match codec {
        CodecId::Aac => 3000usize,
        CodecId::Opus => 52,
        _ => 4000,
    };
    (
        any::<u32>(),
        proptest::collection::vec(
            (
                1u32..6000,
                any::<bool>(),
                proptest::collection::vec((1usize..max, any::<u8>()), 1..4),
            ),
            1..24,
        ),
    )
        .prop_map(move |(start, frames)| {
            let mut ts = start;
            let mut out = Vec::new();
            for (i, (step, key, nals)) in frames.into_iter().enumerate() {
                ts = ts.wrapping_add(step);
                let key = key || i == 0;
                let fill = |len: usize, seed: u8| -> Vec<u8> {
                    (0..len)
                        .map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed))
                        .collect()
                };
                let data = match codec {
                    CodecId::H264 => {
                        let mut list: Vec<Vec<u8>> = Vec::new();
                        if key {
                            list.push(h264_sps().to_vec());
                            list.push(h264_pps().to_vec());
                        }
                        for (k, (len, seed)) in nals.iter().enumerate() {
                            let t = if k + 1 < nals.len() {
                                6
                            } else if key {
                                5
                            } else {
                                1
                            };
                            let mut n = vec![0x60 | t];
                            n.extend(fill(len - 1, *seed));
                            list.push(n);
                        }
                        au(&list.iter().map(|n| &n[..]).collect::<Vec<_>>())
                    }
                    CodecId::H265 => {
                        let mut list: Vec<Vec<u8>> = Vec::new();
                        if key {
                            list.push(b64(GST_VPS).to_vec());
                            list.push(b64(GST_SPS).to_vec());
                            list.push(b64(GST_PPS).to_vec());
                        }
                        for (k, (len, seed)) in nals.iter().enumerate() {
                            let t: u8 = if k + 1 < nals.len() {
                                39
                            } else if key {
                                19
                            } else {
                                1
                            };
                            let mut n = vec![t << 1, 0x01];
                            n.extend(fill(*len, *seed));
                            list.push(n);
                        }
                        au(&list.iter().map(|n| &n[..]).collect::<Vec<_>>())
                    }
                    _ => Bytes::from(fill(nals[0].0, nals[0].1)),
                };
                out.push(Sent {
                    ts,
                    data,
                    key: key || codec.is_audio(),
                });
            }
            out
        })
}

fn fmtp_for(codec: CodecId) -> Vec<(String, String)> {
    match codec {
        CodecId::Aac => {
            fmtp_of("mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190")
        }
        CodecId::Opus => fmtp_of("sprop-stereo=1"),
        _ => Vec::new(),
    }
}

/// Packetizes `frames`: the packets of each frame.
fn send(codec: CodecId, mtu: usize, seq: u16, frames: &[Sent]) -> Vec<Vec<Bytes>> {
    let mut p = Packetizer::new(codec, 96, 0x1234, seq, mtu).unwrap();
    frames
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            p.packetize(f.ts, &f.data, &mut out).unwrap();
            assert!(!out.is_empty());
            assert!(out.iter().all(|b| b.len() <= mtu));
            out
        })
        .collect()
}

/// Depacketizes `(packet, lost)` in order; `strict`: no packet is refused
/// (with every packet since the first, or losses marked, none is).
fn receive(
    codec: CodecId,
    strict: bool,
    packets: impl IntoIterator<Item = (Bytes, bool)>,
) -> (Vec<AccessUnit>, Depacketizer) {
    let rate = if codec == CodecId::Aac {
        48_000
    } else {
        90_000
    };
    let mut d = Depacketizer::new(codec, rate, 2, &fmtp_for(codec)).unwrap();
    let mut unwrap = TimestampUnwrapper::new();
    let mut out = Vec::new();
    for (bytes, lost) in packets {
        let p = RtpPacket::parse(bytes).unwrap();
        let ts = unwrap.extend(p.header.timestamp);
        let r = d.push(&p, ts, lost);
        assert!(!strict || r.is_ok(), "{r:?}");
        out.extend(drain(&mut d));
    }
    (out, d)
}

fn codec_strategy() -> impl Strategy<Value = CodecId> {
    prop_oneof![
        Just(CodecId::H264),
        Just(CodecId::H265),
        Just(CodecId::Aac),
        Just(CodecId::Opus)
    ]
}

fn assert_same(got: &[AccessUnit], want: &[&Sent]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        prop_assert_eq!(g.timestamp as u32, w.ts);
        prop_assert_eq!(&g.data, &w.data);
        prop_assert_eq!(g.key, w.key);
    }
    for w in got.windows(2) {
        prop_assert!(w[1].timestamp > w[0].timestamp);
    }
    Ok(())
}

proptest! {
    /// Packetize then depacketize gives back every frame, for every format
    /// at any MTU.
    #[test]
    fn round_trip(
        (codec, frames) in codec_strategy().prop_flat_map(|c| (Just(c), frames_strategy(c))),
        mtu in 64usize..2000,
        seq in any::<u16>(),
    ) {
        let packets = send(codec, mtu, seq, &frames);
        let (got, d) = receive(codec, true, packets.into_iter().flatten().map(|p| (p, false)));
        assert_same(&got, &frames.iter().collect::<Vec<_>>())?;
        prop_assert_eq!(d.dropped(), 0);
        if codec == CodecId::H264 {
            let c = AvcConfig::parse(&d.config().unwrap()).unwrap();
            prop_assert_eq!(c.sps, vec![h264_sps()]);
        }
        if codec == CodecId::H265 {
            prop_assert!(d.config().is_some());
        }
    }

    /// Packets lost (delivered in order, the first after each gap marked):
    /// exactly the frames the loss rule keeps come out, whole. Video: a
    /// frame whose packets all came and whose previous packet came, that
    /// is a key frame or follows one that came out; AAC: every frame whose
    /// packets all came (a fragmented one also needs its previous packet);
    /// Opus: every packet that came.
    #[test]
    fn loss_yields_only_whole_frames_and_recovers_at_key_frames(
        (codec, frames) in codec_strategy().prop_flat_map(|c| (Just(c), frames_strategy(c))),
        mtu in 64usize..600,
        drops in proptest::collection::vec(0u8..10, 1..400),
    ) {
        let packets = send(codec, mtu, 100, &frames);
        let mut arrived = Vec::new();
        let mut k = 0;
        for frame in &packets {
            arrived.push(frame.iter().map(|_| { k += 1; drops[k % drops.len()] > 1 }).collect::<Vec<bool>>());
        }
        let flat: Vec<bool> = arrived.iter().flatten().copied().collect();
        let mut input = Vec::new();
        let mut prev_arrived = true;
        let mut i = 0;
        for frame in &packets {
            for p in frame {
                if flat[i] {
                    input.push((p.clone(), !prev_arrived));
                }
                prev_arrived = flat[i];
                i += 1;
            }
        }
        // The oracle.
        let mut want = Vec::new();
        let mut first = 0;
        let mut chain = false;
        for (f, sent) in frames.iter().enumerate() {
            let n = packets[f].len();
            let whole = arrived[f].iter().all(|a| *a);
            let clean = first == 0 || flat[first - 1];
            let ok = match codec {
                CodecId::H264 | CodecId::H265 => whole && clean && (sent.key || chain),
                CodecId::Aac => whole && (n == 1 || clean),
                _ => whole,
            };
            chain = ok;
            if ok {
                want.push(sent);
            }
            first += n;
        }
        let (got, _) = receive(codec, true, input);
        assert_same(&got, &want)?;
    }

    /// Through a reorder buffer: packets shuffled locally and some lost,
    /// only frames that were sent come out, whole and in order; with
    /// nothing lost and room enough, all of them.
    #[test]
    fn reordered_and_lost_through_the_reorder_buffer(
        (codec, frames) in codec_strategy().prop_flat_map(|c| (Just(c), frames_strategy(c))),
        mtu in 64usize..600,
        swaps in proptest::collection::vec((any::<usize>(), 1usize..6), 0..60),
        drops in proptest::collection::vec(any::<usize>(), 0..8),
        capacity in 1usize..80,
        delay in prop_oneof![0u64..50, Just(1_000_000u64)],
    ) {
        let packets: Vec<Bytes> = send(codec, mtu, 65_500, &frames).into_iter().flatten().collect();
        let n = packets.len();
        let mut order: Vec<usize> = (0..n).collect();
        for (i, d) in &swaps {
            let i = i % n;
            if i + d < n {
                order.swap(i, i + d);
            }
        }
        // The first packet comes first (a receiver that joins later sees
        // a stream starting there; see `a_stream_joined_mid_picture`).
        if let Some(p) = order.iter().position(|&i| i == 0) {
            order.remove(p);
            order.insert(0, 0);
        }
        let lost: std::collections::BTreeSet<usize> = drops.iter().map(|d| d % n).filter(|&d| d != 0).collect();
        order.retain(|i| !lost.contains(i));
        let mut r = ReorderBuffer::new(capacity, delay);
        let mut input = Vec::new();
        for (t, &i) in order.iter().enumerate() {
            r.push(t as u64 * 10, RtpPacket::parse(packets[i].clone()).unwrap());
            while let Some((p, l)) = r.pop(t as u64 * 10) {
                input.push((p.to_bytes(), l));
            }
        }
        while let Some((p, l)) = r.pop(u64::MAX) {
            input.push((p.to_bytes(), l));
        }
        // The first packet out of the buffer may be a late one's follower
        // (a fragment without its start): refused, as it should be.
        let (got, _) = receive(codec, false, input);
        let by_ts: BTreeMap<u32, &Sent> = frames.iter().map(|f| (f.ts, f)).collect();
        for a in &got {
            let sent = by_ts.get(&(a.timestamp as u32));
            prop_assert!(sent.is_some());
            let sent = sent.unwrap();
            prop_assert_eq!(&a.data, &sent.data);
            prop_assert_eq!(a.key, sent.key);
        }
        for w in got.windows(2) {
            prop_assert!(w[1].timestamp > w[0].timestamp);
        }
        // Nothing lost, the first packet first, no waiting given up on.
        if lost.is_empty() && capacity > n && delay >= 1_000_000 {
            assert_same(&got, &frames.iter().collect::<Vec<_>>())?;
        }
    }

    /// Arbitrary bytes as packets, to every depacketizer: never a panic,
    /// and what comes out is bounded by what went in.
    #[test]
    fn never_panics(
        packets in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..80), any::<bool>(), 0u32..4, any::<bool>()), 0..40),
    ) {
        for codec in [CodecId::H264, CodecId::H265, CodecId::Aac, CodecId::Opus] {
            let mut d = Depacketizer::new(codec, 48_000, 2, &fmtp_for(codec)).unwrap();
            let mut bytes_in = 0usize;
            let mut bytes_out = 0usize;
            for (seq, (payload, marker, ts, lost)) in packets.iter().enumerate() {
                bytes_in += payload.len();
                let p = pkt(seq as u16, *ts, *marker, payload);
                let _ = d.push(&p, i64::from(*ts), *lost);
                let _ = d.config();
                while let Some(a) = d.pop() {
                    bytes_out += a.data.len();
                }
            }
            // Length prefixes add 4 bytes per NAL unit of at least 1 byte.
            prop_assert!(bytes_out <= 5 * bytes_in);
        }
    }
}
