//! The CMAF initialization segment: `ftyp` (brands `iso6`, `cmfc`) and
//! `moov` with one `trak` per track and `mvex`/`trex` (ISO/IEC 14496-12
//! §8.2-8.8; sample entries from ISO/IEC 14496-15 §5.4 `avc1`, §8.4 `hvc1`;
//! AV1-ISOBMFF §2.2 `av01`; VP-ISOBMFF §2.1 `vp09`; ISO/IEC 14496-14 §5.6
//! `mp4a`/`esds`; Opus-ISOBMFF §4.3 `Opus`/`dOps`).

use super::boxes::{begin, begin_full, end, put_matrix};
use super::fragment::Fmp4Error;
use super::{mp4_timescale, mp4_track_id, params_of};
use crate::frame::{CodecId, TrackInfo, TrackSet};
use crate::media::codec::aac::esds_payload;
use crate::media::codec::opus::OpusHead;
use bytes::{BufMut, Bytes, BytesMut};

/// Builds the initialization segment for these tracks.
pub fn init_segment(tracks: &TrackSet) -> Result<Bytes, Fmp4Error> {
    if tracks.is_empty() {
        return Err(Fmp4Error::NoTracks);
    }
    let mut out = BytesMut::with_capacity(1024);
    let ftyp = begin(&mut out, b"ftyp");
    out.put_slice(b"iso6");
    out.put_u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        out.put_slice(brand);
    }
    if tracks.iter().any(|t| t.codec == CodecId::Av1) {
        out.put_slice(b"av01");
    }
    end(&mut out, ftyp);

    let moov = begin(&mut out, b"moov");
    let mvhd = begin_full(&mut out, b"mvhd", 0, 0);
    out.put_u32(0); // creation_time
    out.put_u32(0); // modification_time
    out.put_u32(1000); // timescale
    out.put_u32(0); // duration: unknown (fragmented)
    out.put_u32(0x0001_0000); // rate 1.0
    out.put_u16(0x0100); // volume 1.0
    out.put_bytes(0, 10);
    put_matrix(&mut out);
    out.put_bytes(0, 24); // pre_defined
    let next_id = tracks.iter().map(mp4_track_id).max().unwrap_or(0) + 1;
    out.put_u32(next_id);
    end(&mut out, mvhd);
    for t in tracks.iter() {
        write_trak(&mut out, t)?;
    }
    let mvex = begin(&mut out, b"mvex");
    for t in tracks.iter() {
        let trex = begin_full(&mut out, b"trex", 0, 0);
        out.put_u32(mp4_track_id(t));
        out.put_u32(1); // default_sample_description_index
        out.put_u32(0);
        out.put_u32(0);
        out.put_u32(0);
        end(&mut out, trex);
    }
    end(&mut out, mvex);
    end(&mut out, moov);
    Ok(out.freeze())
}

fn write_trak(out: &mut BytesMut, t: &TrackInfo) -> Result<(), Fmp4Error> {
    let p = params_of(t);
    let video = t.codec.is_video();
    let trak = begin(out, b"trak");
    let tkhd = begin_full(out, b"tkhd", 0, 3); // enabled, in movie
    out.put_u32(0);
    out.put_u32(0);
    out.put_u32(mp4_track_id(t));
    out.put_u32(0);
    out.put_u32(0); // duration
    out.put_bytes(0, 8);
    out.put_u16(0); // layer
    out.put_u16(0); // alternate_group
    out.put_u16(if video { 0 } else { 0x0100 });
    out.put_u16(0);
    put_matrix(out);
    out.put_u32(if video { p.width << 16 } else { 0 });
    out.put_u32(if video { p.height << 16 } else { 0 });
    end(out, tkhd);

    let mdia = begin(out, b"mdia");
    let mdhd = begin_full(out, b"mdhd", 0, 0);
    out.put_u32(0);
    out.put_u32(0);
    out.put_u32(mp4_timescale(t).hz());
    out.put_u32(0);
    out.put_u16(0x55C4); // 'und'
    out.put_u16(0);
    end(out, mdhd);
    let hdlr = begin_full(out, b"hdlr", 0, 0);
    out.put_u32(0);
    out.put_slice(if video { b"vide" } else { b"soun" });
    out.put_bytes(0, 12);
    out.put_slice(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    end(out, hdlr);
    let minf = begin(out, b"minf");
    if video {
        let vmhd = begin_full(out, b"vmhd", 0, 1);
        out.put_bytes(0, 8);
        end(out, vmhd);
    } else {
        let smhd = begin_full(out, b"smhd", 0, 0);
        out.put_u32(0);
        end(out, smhd);
    }
    let dinf = begin(out, b"dinf");
    let dref = begin_full(out, b"dref", 0, 0);
    out.put_u32(1);
    let url = begin_full(out, b"url ", 0, 1); // media in the same file
    end(out, url);
    end(out, dref);
    end(out, dinf);
    let stbl = begin(out, b"stbl");
    let stsd = begin_full(out, b"stsd", 0, 0);
    out.put_u32(1);
    if video {
        write_visual_entry(out, t, p.width, p.height)?;
    } else {
        write_audio_entry(out, t, p.sample_rate, p.channels)?;
    }
    end(out, stsd);
    for fourcc in [b"stts", b"stsc", b"stco"] {
        let b = begin_full(out, fourcc, 0, 0);
        out.put_u32(0);
        end(out, b);
    }
    let stsz = begin_full(out, b"stsz", 0, 0);
    out.put_u32(0);
    out.put_u32(0);
    end(out, stsz);
    end(out, stbl);
    end(out, minf);
    end(out, mdia);
    end(out, trak);
    Ok(())
}

fn write_visual_entry(
    out: &mut BytesMut,
    t: &TrackInfo,
    width: u32,
    height: u32,
) -> Result<(), Fmp4Error> {
    let (fourcc, config_box): (&[u8; 4], &[u8; 4]) = match t.codec {
        CodecId::H264 => (b"avc1", b"avcC"),
        CodecId::H265 => (b"hvc1", b"hvcC"),
        CodecId::Av1 => (b"av01", b"av1C"),
        CodecId::Vp9 => (b"vp09", b"vpcC"),
        other => return Err(Fmp4Error::UnsupportedCodec(other)),
    };
    if t.config.is_empty() {
        return Err(Fmp4Error::MissingConfig(t.id));
    }
    let e = begin(out, fourcc);
    out.put_bytes(0, 6);
    out.put_u16(1); // data_reference_index
    out.put_bytes(0, 16);
    out.put_u16(width.min(0xFFFF) as u16);
    out.put_u16(height.min(0xFFFF) as u16);
    out.put_u32(0x0048_0000);
    out.put_u32(0x0048_0000);
    out.put_u32(0);
    out.put_u16(1); // frame_count
    out.put_bytes(0, 32); // compressorname
    out.put_u16(0x0018);
    out.put_i16(-1);
    let c = if t.codec == CodecId::Vp9 {
        begin_full(out, config_box, 1, 0)
    } else {
        begin(out, config_box)
    };
    out.extend_from_slice(&t.config);
    end(out, c);
    end(out, e);
    Ok(())
}

fn write_audio_entry(
    out: &mut BytesMut,
    t: &TrackInfo,
    sample_rate: u32,
    channels: u8,
) -> Result<(), Fmp4Error> {
    let fourcc: &[u8; 4] = match t.codec {
        CodecId::Aac | CodecId::Mp3 => b"mp4a",
        CodecId::Opus => b"Opus",
        other => return Err(Fmp4Error::UnsupportedCodec(other)),
    };
    let rate = if t.codec == CodecId::Opus {
        48_000
    } else {
        sample_rate
    };
    let e = begin(out, fourcc);
    out.put_bytes(0, 6);
    out.put_u16(1);
    out.put_bytes(0, 8);
    out.put_u16(u16::from(channels.max(1)));
    out.put_u16(16);
    out.put_u32(0);
    out.put_u32(if rate <= 0xFFFF { rate << 16 } else { 0 });
    match t.codec {
        CodecId::Aac => {
            if t.config.is_empty() {
                return Err(Fmp4Error::MissingConfig(t.id));
            }
            let b = begin_full(out, b"esds", 0, 0);
            out.extend_from_slice(&esds_payload(0x40, &t.config, 0));
            end(out, b);
        }
        CodecId::Mp3 => {
            let b = begin_full(out, b"esds", 0, 0);
            out.extend_from_slice(&esds_payload(0x6B, &[], 0));
            end(out, b);
        }
        _ => {
            let head = OpusHead::parse(&t.config).map_err(|source| Fmp4Error::Codec {
                track: t.id,
                source,
            })?;
            let b = begin(out, b"dOps");
            out.extend_from_slice(&head.to_dops());
            end(out, b);
        }
    }
    end(out, e);
    Ok(())
}
