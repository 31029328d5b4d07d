#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! Bytes muxed and demuxed per second: the MPEG-TS muxer and demuxer and the
//! fMP4 fragmenter on a real 320x240 H.264 + AAC stream, against the
//! MPEG-TS muxer of the published `arcly-stream` 0.1.5 on the same frames.

use arcly_core::frame::{CodecId, MediaFrame, TrackSet};
use arcly_core::media::codec::aac::{AdtsHeader, AudioSpecificConfig};
use arcly_core::media::codec::nal::length_prefixed_to_annex_b;
use arcly_core::media::fmp4::{Fmp4Config, Fmp4Muxer};
use arcly_core::media::ts::{TsDemuxer, TsMuxer, TsMuxerConfig};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const INPUT: &[u8] = include_bytes!("../testdata/h264_aac.ts");

fn demux(data: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
    TsDemuxer::read_all(data)
}

fn bench(c: &mut Criterion) {
    let (tracks, frames) = demux(INPUT);
    let payload: u64 = frames.iter().map(|f| f.payload.len() as u64).sum();

    // The baseline takes Annex-B video and ADTS audio in milliseconds.
    let asc = AudioSpecificConfig::parse(&tracks.audio().expect("audio").config).expect("asc");
    let baseline_frames: Vec<arcly_stream::MediaFrame> = frames
        .iter()
        .map(|f| {
            if f.codec == CodecId::H264 {
                let data = length_prefixed_to_annex_b(f.payload.clone()).expect("valid AU");
                arcly_stream::MediaFrame::new_video(
                    f.pts.as_millis(),
                    f.dts.as_millis(),
                    Bytes::from(data.to_vec()),
                    arcly_stream::CodecId::H264,
                    f.is_key(),
                )
            } else {
                let mut b = BytesMut::new();
                AdtsHeader::for_config(&asc, f.payload.len())
                    .expect("adts")
                    .write(&mut b);
                b.extend_from_slice(&f.payload);
                arcly_stream::MediaFrame::new_audio(
                    f.pts.as_millis(),
                    Bytes::from(b.to_vec()),
                    arcly_stream::CodecId::AAC,
                )
            }
        })
        .collect();

    let mut g = c.benchmark_group("ts_mux");
    g.throughput(Throughput::Bytes(payload));
    g.bench_function("arcly-core", |b| {
        b.iter(|| {
            let mut m = TsMuxer::new(&tracks, TsMuxerConfig::default()).expect("tracks");
            let mut out = BytesMut::with_capacity(INPUT.len() * 2);
            for f in &frames {
                m.write_frame(f, &mut out).expect("frame");
            }
            black_box(out.len())
        })
    });
    g.bench_function("arcly-stream-0.1.5", |b| {
        use arcly_stream::packager::{MpegTsMuxer, Muxer};
        b.iter(|| {
            let mut m = MpegTsMuxer::new();
            m.start_segment().expect("segment");
            for f in &baseline_frames {
                m.write(f).expect("frame");
            }
            black_box(m.finish_segment().expect("bytes").len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("ts_demux");
    g.throughput(Throughput::Bytes(INPUT.len() as u64));
    g.bench_function("arcly-core", |b| b.iter(|| black_box(demux(INPUT).1.len())));
    g.finish();

    let mut g = c.benchmark_group("fmp4_mux");
    g.throughput(Throughput::Bytes(payload));
    g.bench_function("arcly-core", |b| {
        b.iter(|| {
            let mut m = Fmp4Muxer::new(&tracks, Fmp4Config::segments_of(1)).expect("tracks");
            let mut n = 0;
            for f in &frames {
                m.push(f).expect("frame");
                while let Some(frag) = m.poll_fragment() {
                    n += frag.data.len();
                }
            }
            m.flush();
            while let Some(frag) = m.poll_fragment() {
                n += frag.data.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
