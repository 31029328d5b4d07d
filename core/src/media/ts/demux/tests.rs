use super::*;
use crate::frame::TrackSet;
use crate::media::ts::mux::{TsMuxer, TsMuxerConfig};
use proptest::prelude::*;

pub(crate) const H264_AAC: &[u8] = include_bytes!("../../../../testdata/h264_aac.ts");
pub(crate) const H265_AAC: &[u8] = include_bytes!("../../../../testdata/h265_aac.ts");
pub(crate) const H264_OPUS: &[u8] = include_bytes!("../../../../testdata/h264_opus.ts");
pub(crate) const H264_AAC_WRAP: &[u8] = include_bytes!("../../../../testdata/h264_aac_wrap.ts");
pub(crate) const MP3: &[u8] = include_bytes!("../../../../testdata/mp3_audio.ts");

#[derive(Default, Debug)]
pub(crate) struct Demuxed {
    pub tracks: Vec<TrackInfo>,
    pub frames: Vec<MediaFrame>,
    pub other: Vec<TsEvent>,
}

impl Demuxed {
    pub fn track_set(&self) -> TrackSet {
        let mut s = TrackSet::new();
        for t in &self.tracks {
            s.upsert(t.clone()).unwrap();
        }
        s
    }
    pub fn of(&self, track: u8) -> Vec<&MediaFrame> {
        self.frames
            .iter()
            .filter(|f| f.track == TrackId(track))
            .collect()
    }
}

pub(crate) fn demux(data: &[u8], chunk: usize) -> Demuxed {
    let mut d = TsDemuxer::new(TsDemuxerConfig::default());
    let mut out = Demuxed::default();
    let drain = |d: &mut TsDemuxer, out: &mut Demuxed| {
        while let Some(e) = d.poll_event() {
            match e {
                TsEvent::Track(t) => {
                    assert!(
                        !out.frames.iter().any(|f| f.track == t.id)
                            || out.tracks.iter().any(|x| x.id == t.id)
                    );
                    out.tracks.push(t)
                }
                TsEvent::Frame(f) => {
                    assert!(
                        out.tracks.iter().any(|t| t.id == f.track),
                        "frame before its track"
                    );
                    out.frames.push(f)
                }
                other => out.other.push(other),
            }
        }
    };
    for c in data.chunks(chunk.max(1)) {
        d.push(c);
        drain(&mut d, &mut out);
    }
    d.flush();
    drain(&mut d, &mut out);
    out
}

#[test]
fn h264_high_with_b_frames_and_aac() {
    let d = demux(H264_AAC, 1000);
    assert!(d.other.is_empty(), "{:?}", d.other);
    assert_eq!(d.tracks.len(), 2);
    let v = &d.tracks[0];
    assert_eq!((v.id, v.codec), (TrackId(0), CodecId::H264));
    assert_eq!((v.params.width, v.params.height), (320, 240));
    assert_eq!(v.params.codec_string.as_str(), "avc1.64000d");
    assert_eq!(v.params.frame_rate_milli, 30_000);
    let a = &d.tracks[1];
    assert_eq!((a.id, a.codec), (TrackId(1), CodecId::Aac));
    assert_eq!(&a.config[..], &[0x11, 0x90]);
    assert_eq!(a.params.codec_string.as_str(), "mp4a.40.2");
    let video = d.of(0);
    let audio = d.of(1);
    assert_eq!((video.len(), audio.len()), (60, 95));
    // ffprobe: first video pts 132000, dts 126000, key; second pts 141000 dts 129000.
    assert_eq!(
        (video[0].pts.ticks, video[0].dts.ticks, video[0].kind),
        (132_000, 126_000, FrameKind::Key)
    );
    assert_eq!(
        (video[1].pts.ticks, video[1].dts.ticks, video[1].kind),
        (141_000, 129_000, FrameKind::Delta)
    );
    assert_eq!(audio[0].pts.ticks, 130_080);
    assert_eq!(video.iter().filter(|f| f.is_key()).count(), 1);
    // Canonical form: length-prefixed, no AUD/SPS/PPS in the payload.
    for f in &video {
        for nal in crate::media::codec::nal::LengthPrefixedNals::new(f.payload.clone()) {
            let t = h264::nal_type(&nal.unwrap());
            assert!(!matches!(t, h264::NAL_AUD | h264::NAL_SPS | h264::NAL_PPS));
        }
    }
    // Raw AAC: no ADTS sync word at the start.
    assert!(audio
        .iter()
        .all(|f| !(f.payload[0] == 0xFF && f.payload[1] & 0xF0 == 0xF0)));
}

#[test]
fn h265_and_aac() {
    let d = demux(H265_AAC, 188 * 7);
    assert!(d.other.is_empty(), "{:?}", d.other);
    let v = &d.tracks[0];
    assert_eq!(v.codec, CodecId::H265);
    assert_eq!((v.params.width, v.params.height), (320, 240));
    assert_eq!(v.params.codec_string.as_str(), "hvc1.1.6.L60.90");
    assert_eq!(v.params.frame_rate_milli, 30_000);
    // hvcC as ffmpeg writes it for this stream when remuxing to MP4, except
    // that ffmpeg leaves array_completeness at 0 where ISO/IEC 14496-15
    // §8.4.1 makes it 1 for 'hvc1' (the parameter sets are all in the record).
    let mut ffmpeg_hvcc: alloc::vec::Vec<u8> = alloc::vec![
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0x20, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x3c, 0x95, 0x98, 0x09, 0x21, 0x00, 0x01, 0x00, 0x2a, 0x42, 0x01, 0x01,
        0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c,
        0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00,
        0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10, 0x22, 0x00, 0x01, 0x00, 0x07, 0x44,
        0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];
    for i in [23, 52, 99] {
        assert_eq!(ffmpeg_hvcc[i] & 0xC0, 0);
        ffmpeg_hvcc[i] |= 0x80;
    }
    assert_eq!(&v.config[..], &ffmpeg_hvcc[..]);
    assert_eq!((d.of(0).len(), d.of(1).len()), (60, 95));
    assert!(d.of(0)[0].is_key());
}

#[test]
fn h264_and_opus() {
    let d = demux(H264_OPUS, 333);
    assert!(d.other.is_empty(), "{:?}", d.other);
    assert_eq!(d.tracks[0].params.codec_string.as_str(), "avc1.4d400d");
    let a = &d.tracks[1];
    assert_eq!(a.codec, CodecId::Opus);
    assert_eq!(a.params.channels, 1);
    // ffmpeg signals the encoder delay as the first packet's start trim.
    let head = crate::media::codec::opus::OpusHead::parse(&a.config).unwrap();
    assert_eq!(head.pre_skip, 312);
    // avcC as ffmpeg writes it for this stream when remuxing to MP4.
    let ffmpeg_avcc: &[u8] = &[
        0x01, 0x4d, 0x40, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x4d, 0x40, 0x0d, 0xd9, 0x01, 0x41,
        0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42,
        0xa4, 0x80, 0x01, 0x00, 0x05, 0x68, 0xeb, 0xc0, 0xe4, 0xb2,
    ];
    assert_eq!(&d.tracks[0].config[..], ffmpeg_avcc);
    assert_eq!((d.of(0).len(), d.of(1).len()), (60, 101));
    assert_eq!(d.of(0).iter().filter(|f| f.is_key()).count(), 2);
}

#[test]
fn mp3_audio_only() {
    let d = demux(MP3, 4096);
    assert!(d.other.is_empty(), "{:?}", d.other);
    assert_eq!(d.tracks[0].codec, CodecId::Mp3);
    assert_eq!(d.tracks[0].id, TrackId(1));
    assert_eq!(d.tracks[0].params.sample_rate, 44_100);
    assert_eq!(d.frames.len(), 40);
}

#[test]
fn crosses_the_33_bit_wrap_frame_exactly() {
    let d = demux(H264_AAC_WRAP, 188);
    assert!(d.other.is_empty(), "{:?}", d.other);
    let video = d.of(0);
    let audio = d.of(1);
    assert_eq!((video.len(), audio.len()), (60, 95));
    let m = 1i64 << 33;
    assert!(video[0].dts.ticks < m && video.last().unwrap().dts.ticks > m);
    // Every step is exactly one frame (3000 ticks at 30 fps) and one AAC
    // frame (1920 ticks at 48 kHz).
    for w in video.windows(2) {
        assert_eq!(w[1].dts.ticks - w[0].dts.ticks, 3000);
    }
    for w in audio.windows(2) {
        assert_eq!(w[1].pts.ticks - w[0].pts.ticks, 1920);
    }
    // Same A/V offset as the unwrapped file.
    let plain = demux(H264_AAC, 188);
    assert_eq!(
        video[0].dts.ticks - audio[0].pts.ticks,
        plain.of(0)[0].dts.ticks - plain.of(1)[0].pts.ticks
    );
}

#[test]
fn chunking_does_not_matter() {
    let a = demux(H264_AAC, 1);
    let b = demux(H264_AAC, 65536);
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.tracks, b.tracks);
}

#[test]
fn continuity_loss_is_reported() {
    // Drop the 40th packet (inside the first video PES).
    let mut data = H264_AAC.to_vec();
    data.drain(39 * 188..40 * 188);
    let d = demux(&data, 188);
    assert!(d
        .other
        .iter()
        .any(|e| matches!(e, TsEvent::ContinuityLoss { .. })));
    assert!(d.frames.len() < 155);
}

#[test]
fn resyncs_after_garbage() {
    let mut data = alloc::vec![0x12u8; 77];
    data.extend_from_slice(H264_AAC);
    let d = demux(&data, 500);
    assert!(matches!(d.other[0], TsEvent::SyncLoss { skipped: 77 }));
    assert_eq!(d.frames.len(), 155);
}

#[test]
fn latm_is_reported_unsupported() {
    let mut d = TsDemuxer::new(TsDemuxerConfig::default());
    let mut pkt = BytesMut::new();
    let mut pat = BytesMut::new();
    psi::build_pat(&mut pat, 1, 1, 0x1000);
    let mut pmt = BytesMut::new();
    psi::build_pmt(
        &mut pmt,
        &psi::Pmt {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            streams: alloc::vec![psi::PmtStream {
                stream_type: STREAM_TYPE_AAC_LATM,
                pid: 0x101,
                descriptors: alloc::vec![]
            }],
        },
    );
    for (pid, sec) in [(0u16, &pat), (0x1000, &pmt)] {
        pkt.put_u8(0x47);
        pkt.put_u16(0x4000 | pid);
        pkt.put_u8(0x10);
        pkt.put_u8(0);
        pkt.extend_from_slice(sec);
        pkt.put_bytes(0xFF, 183 - sec.len());
    }
    d.push(&pkt);
    assert!(matches!(
        d.poll_event(),
        Some(TsEvent::Unsupported {
            stream_type: 0x11,
            ..
        })
    ));
}

fn assert_same_frames(a: &[MediaFrame], b: &[MediaFrame]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.track, x.kind, x.pts, x.dts),
            (y.track, y.kind, y.pts, y.dts)
        );
        assert_eq!(x.payload, y.payload);
    }
}

#[test]
fn demux_mux_demux_is_lossless_on_real_streams() {
    for input in [H264_AAC, H265_AAC, H264_OPUS, MP3, H264_AAC_WRAP] {
        let d = demux(input, 4096);
        let mut m = TsMuxer::new(&d.track_set(), TsMuxerConfig::default()).unwrap();
        let mut out = BytesMut::new();
        for f in &d.frames {
            m.write_frame(f, &mut out).unwrap();
        }
        let again = demux(&out, 4096);
        assert!(again.other.is_empty(), "{:?}", again.other);
        // Tables about every 100 ms, not on every interleaving step.
        let pats = out
            .chunks(188)
            .filter(|p| p[1] & 0x1F == 0 && p[2] == 0)
            .count();
        let secs = (d
            .frames
            .iter()
            .map(|f| f.dts)
            .max()
            .unwrap()
            .ticks_since(d.frames.iter().map(|f| f.dts).min().unwrap())) as f64
            / 90_000.0;
        assert!((pats as f64) < secs * 10.0 + 3.0, "{pats} PATs in {secs} s");
        assert_eq!(
            again
                .tracks
                .iter()
                .map(|t| (&t.config, t.codec))
                .collect::<Vec<_>>(),
            d.tracks
                .iter()
                .map(|t| (&t.config, t.codec))
                .collect::<Vec<_>>()
        );
        // The muxer writes frames in the order given; the demuxer gives them
        // back per track in the same order.
        for t in 0..2 {
            let a: Vec<MediaFrame> = d.of(t).into_iter().cloned().collect();
            let b: Vec<MediaFrame> = again.of(t).into_iter().cloned().collect();
            assert_same_frames(&a, &b);
        }
    }
}

fn arb_frames() -> impl Strategy<Value = Vec<(bool, u32, Vec<u8>)>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            1u32..6000,
            proptest::collection::vec(any::<u8>(), 1..3000),
        ),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of H.264 and AAC frames survives mux then demux: same
    /// payloads, times, kinds and order.
    #[test]
    fn mux_demux_round_trip(frames in arb_frames(), start in 0i64..(1 << 33)) {
        let first = demux(H264_AAC, 65536);
        let set = first.track_set();
        let mut m = TsMuxer::new(&set, TsMuxerConfig::default()).unwrap();
        let mut out = BytesMut::new();
        let mut vt = start;
        let mut at = start;
        let mut sent = Vec::new();
        for (i, (is_video, step, body)) in frames.into_iter().enumerate() {
            let f = if is_video || i == 0 {
                // A slice NAL (type 1, or 5 for key) with escaped content.
                let key = i == 0 || step % 7 == 0;
                let mut nal = alloc::vec![if key { 0x65 } else { 0x41 }];
                nal.extend(crate::media::codec::bits::escape_rbsp(&body));
                if nal.last() == Some(&0) { nal.push(0x80); }
                let mut p = BytesMut::new();
                p.put_u32(nal.len() as u32);
                p.extend_from_slice(&nal);
                vt += i64::from(step);
                let mut f = MediaFrame::video(TrackId(0), CodecId::H264, key, MediaTime::new(vt, Timescale::MPEG), p.freeze());
                f.pts = MediaTime::new(vt + i64::from(step % 3) * 3000, Timescale::MPEG);
                f
            } else {
                at += i64::from(step);
                MediaFrame::audio(TrackId(1), CodecId::Aac, MediaTime::new(at, Timescale::MPEG), Bytes::from(body[..body.len().min(4000)].to_vec()))
            };
            m.write_frame(&f, &mut out).unwrap();
            sent.push(f);
        }
        let back = demux(&out, 1000);
        prop_assert!(back.other.is_empty(), "{:?}", back.other);
        for t in 0..2u8 {
            let a: Vec<&MediaFrame> = sent.iter().filter(|f| f.track == TrackId(t)).collect();
            let b = back.of(t);
            prop_assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                // Times come back extended from the first one seen, which is
                // the value modulo 2^33.
                let base = start - start.rem_euclid(1 << 33);
                prop_assert_eq!(x.dts.ticks - base, y.dts.ticks);
                prop_assert_eq!(x.pts.ticks - base, y.pts.ticks);
                prop_assert_eq!(&x.payload, &y.payload);
                prop_assert_eq!(x.kind, y.kind);
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = demux(&data, 97);
    }

    #[test]
    fn never_panics_on_corrupted_real_stream(flips in proptest::collection::vec((0usize..H264_AAC.len(), any::<u8>()), 1..50)) {
        let mut data = H264_AAC[..30_000].to_vec();
        for (i, v) in flips { if i < data.len() { data[i] ^= v; } }
        let _ = demux(&data, 1500);
    }
}

#[test]
fn video_only_and_audio_only_programs() {
    let d = demux(H265_AAC, 65536);
    for keep in [0u8, 1] {
        let mut set = TrackSet::new();
        set.upsert(
            d.tracks
                .iter()
                .find(|t| t.id == TrackId(keep))
                .unwrap()
                .clone(),
        )
        .unwrap();
        let mut m = TsMuxer::new(&set, TsMuxerConfig::default()).unwrap();
        let mut out = BytesMut::new();
        let frames: Vec<MediaFrame> = d.of(keep).into_iter().cloned().collect();
        for f in &frames {
            m.write_frame(f, &mut out).unwrap();
        }
        let back = demux(&out, 188 * 3);
        assert!(back.other.is_empty(), "{:?}", back.other);
        assert_eq!(back.tracks.len(), 1);
        assert_eq!(back.tracks[0].config, set.iter().next().unwrap().config);
        assert_same_frames(&frames, &back.frames);
    }
}

#[test]
fn oversized_pes_is_dropped_and_reported() {
    let mut d = TsDemuxer::new(TsDemuxerConfig { max_pes_size: 1000 });
    d.push(H264_AAC);
    d.flush();
    let mut too_large = 0;
    let mut frames = 0;
    while let Some(e) = d.poll_event() {
        match e {
            TsEvent::Error {
                error: TsError::PesTooLarge(1000),
                ..
            } => too_large += 1,
            TsEvent::Frame(_) => frames += 1,
            _ => {}
        }
    }
    assert!(too_large > 0);
    assert!(frames < 155);
}

#[test]
fn discontinuity_round_trip() {
    let d = demux(H264_AAC, 65536);
    let mut m = TsMuxer::new(&d.track_set(), TsMuxerConfig::default()).unwrap();
    let mut out = BytesMut::new();
    for round in 0..2 {
        let mut seen = [false; 2];
        for f in &d.frames {
            let mut f = f.clone();
            let t = usize::from(f.track.0);
            f.discontinuity = round == 1 && !seen[t];
            seen[t] = true;
            m.write_frame(&f, &mut out).unwrap();
        }
    }
    let back = demux(&out, 4096);
    assert_eq!(back.frames.len(), 2 * d.frames.len());
    assert!(
        back.other
            .iter()
            .any(|e| matches!(e, TsEvent::Discontinuity { pid: 0x100 })),
        "{:?}",
        back.other
    );
    assert!(
        back.other
            .iter()
            .all(|e| matches!(e, TsEvent::Discontinuity { .. })),
        "{:?}",
        back.other
    );
    // Video times restart exactly where the first round started.
    let v = back.of(0);
    let n = d.of(0).len();
    assert!(v[n].discontinuity);
    for i in 0..n {
        assert_eq!(v[i].dts, v[n + i].dts);
        assert_eq!(v[i].pts, v[n + i].pts);
    }
}

/// ADTS frames cut across PES packets (as some muxers write them) are
/// joined again with the right times.
#[test]
fn adts_frames_split_across_pes_packets() {
    use crate::media::codec::aac::{AdtsHeader, AudioSpecificConfig};
    let d = demux(H264_AAC, 65536);
    let asc = AudioSpecificConfig::parse(&d.tracks[1].config).unwrap();
    let audio = d.of(1);
    let mut es = BytesMut::new();
    for f in &audio {
        AdtsHeader::for_config(&asc, f.payload.len())
            .unwrap()
            .write(&mut es);
        es.extend_from_slice(&f.payload);
    }
    let mut set = TrackSet::new();
    set.upsert(d.tracks[1].clone()).unwrap();
    // PAT/PMT from the muxer, then PES packets of 500 bytes of ADTS each,
    // stamped with the time of the first frame that starts in them.
    let mut m = TsMuxer::new(&set, TsMuxerConfig::default()).unwrap();
    let mut out = BytesMut::new();
    m.write_frame(audio[0], &mut out).unwrap();
    out.truncate(2 * 188); // keep the tables
    let mut starts = alloc::vec::Vec::new();
    let mut pos = 0;
    for f in &audio {
        starts.push((pos, f.pts.ticks));
        pos += 7 + f.payload.len();
    }
    let mut cc = 0u8;
    let mut at = 0;
    while at < es.len() {
        let end = (at + 500).min(es.len());
        let pts = starts.iter().find(|(p, _)| *p >= at).map_or(0, |&(_, t)| t);
        let mut pes = BytesMut::new();
        crate::media::ts::pes::write_header(&mut pes, 0xC0, pts as u64, None, end - at, false);
        pes.extend_from_slice(&es[at..end]);
        crate::media::ts::mux::packetize(&mut out, 0x100, &mut cc, &pes, None, false, false);
        at = end;
    }
    let back = demux(&out, 1000);
    assert!(back.other.is_empty(), "{:?}", back.other);
    let got = back.of(1);
    assert_eq!(got.len(), audio.len());
    for (a, b) in audio.iter().zip(&got) {
        assert_eq!(a.payload, b.payload);
        assert_eq!(a.pts, b.pts);
    }
}

/// A new PMT version that adds a stream before a kept one: the kept
/// stream keeps its track id and the new one gets a free id.
#[test]
fn pmt_update_keeps_track_ids() {
    let mut d = TsDemuxer::new(TsDemuxerConfig::default());
    let table = |pid: u16, sec: &BytesMut, out: &mut BytesMut, cc: u8| {
        out.put_u8(0x47);
        out.put_u16(0x4000 | pid);
        out.put_u8(0x10 | cc);
        out.put_u8(0);
        out.extend_from_slice(sec);
        out.put_bytes(0xFF, 183 - sec.len());
    };
    let mut pat = BytesMut::new();
    psi::build_pat(&mut pat, 1, 1, 0x1000);
    let stream = |stream_type, pid| psi::PmtStream {
        stream_type,
        pid,
        descriptors: alloc::vec![],
    };
    let mut v1 = BytesMut::new();
    psi::build_pmt(
        &mut v1,
        &psi::Pmt {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            streams: alloc::vec![stream(STREAM_TYPE_AAC_ADTS, 0x101)],
        },
    );
    let mut v2 = BytesMut::new();
    psi::build_pmt(
        &mut v2,
        &psi::Pmt {
            program_number: 1,
            version: 1,
            pcr_pid: 0x101,
            streams: alloc::vec![
                stream(STREAM_TYPE_AAC_ADTS, 0x102),
                stream(STREAM_TYPE_AAC_ADTS, 0x101)
            ],
        },
    );
    let mut out = BytesMut::new();
    table(0, &pat, &mut out, 0);
    table(0x1000, &v1, &mut out, 0);
    table(0x1000, &v2, &mut out, 1);
    d.push(&out);
    let ids: Vec<(u16, TrackId)> = d.streams.iter().map(|s| (s.pid, s.track)).collect();
    assert_eq!(ids, [(0x102, TrackId(2)), (0x101, TrackId(1))]);
}

/// Several AAC or MP3 frames per PES (as ffmpeg writes them): fewer bytes,
/// the same frames back.
#[test]
fn grouped_audio_round_trip() {
    for input in [H264_AAC, MP3] {
        let d = demux(input, 65536);
        let mut sizes = Vec::new();
        for group in [1u8, 6] {
            let cfg = TsMuxerConfig {
                audio_frames_per_pes: group,
                ..TsMuxerConfig::default()
            };
            let mut m = TsMuxer::new(&d.track_set(), cfg).unwrap();
            let mut out = BytesMut::new();
            for f in &d.frames {
                m.write_frame(f, &mut out).unwrap();
            }
            m.flush(&mut out).unwrap();
            sizes.push(out.len());
            let back = demux(&out, 4096);
            assert!(back.other.is_empty(), "{:?}", back.other);
            for t in 0..2 {
                let a: Vec<MediaFrame> = d.of(t).into_iter().cloned().collect();
                let b: Vec<MediaFrame> = back.of(t).into_iter().cloned().collect();
                assert_same_frames(&a, &b);
            }
        }
        assert!(sizes[1] < sizes[0], "{sizes:?}");
    }
}
