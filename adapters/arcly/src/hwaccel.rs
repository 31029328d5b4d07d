//! Hardware encoders and decoders as ffmpeg offers them: each backend
//! (NVENC, VAAPI, Quick Sync, AMF, V4L2 mem2mem, VideoToolbox) found in
//! `ffmpeg -encoders` / `-decoders`, and usable only when a one-frame test
//! encode through it succeeds on this machine. `arcly hwaccel` prints what
//! was found and why a backend is not usable.

use arcly_core::frame::CodecId;
use arcly_core::transcode::HwAccelBackend;
use std::path::Path;
use std::process::{Command, Stdio};

/// The backends ffmpeg names by suffix: our id, its encoders' suffix, its
/// decoders' suffix (`None`: it decodes through `-hwaccel`, not by name).
const KNOWN: [(&str, &str, Option<&str>); 6] = [
    ("nvenc", "_nvenc", Some("_cuvid")),
    ("vaapi", "_vaapi", None),
    ("qsv", "_qsv", Some("_qsv")),
    ("amf", "_amf", None),
    ("v4l2m2m", "_v4l2m2m", Some("_v4l2m2m")),
    ("videotoolbox", "_videotoolbox", None),
];

/// One backend as ffmpeg offers it here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FfmpegBackend {
    id: &'static str,
    /// ffmpeg's names of its encoders, e.g. `h264_nvenc`.
    pub encoder_names: Vec<String>,
    encoders: Vec<CodecId>,
    decoders: Vec<CodecId>,
    /// Why it is not usable (`None`: a test encode succeeded).
    pub unavailable: Option<String>,
}

impl HwAccelBackend for FfmpegBackend {
    fn id(&self) -> &'static str {
        self.id
    }

    fn is_available(&self) -> bool {
        self.unavailable.is_none()
    }

    fn supported_encoders(&self) -> &[CodecId] {
        &self.encoders
    }

    fn supported_decoders(&self) -> &[CodecId] {
        &self.decoders
    }
}

/// The codec of an ffmpeg codec name, for those the kernel carries.
fn codec(name: &str) -> Option<CodecId> {
    Some(match name {
        "h264" => CodecId::H264,
        "hevc" => CodecId::H265,
        "av1" => CodecId::Av1,
        "vp9" => CodecId::Vp9,
        _ => return None,
    })
}

/// `(name, codec)` of each video line of `ffmpeg -encoders` or
/// `-decoders` (` V....D h264_nvenc   NVIDIA NVENC H.264 encoder (codec h264)`).
fn listed(text: &str) -> Vec<(String, Option<CodecId>)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let flags = words.next()?;
            let name = words.next()?;
            if flags.len() != 6 || !flags.starts_with('V') || name == "=" {
                return None;
            }
            // The codec is named at the end when it differs from the name.
            let codec_name = l
                .rsplit_once("(codec ")
                .and_then(|(_, c)| c.strip_suffix(')'))
                .unwrap_or(name);
            Some((name.to_string(), codec(codec_name)))
        })
        .collect()
}

/// The backends `encoders` and `decoders` (ffmpeg's lists) name, each
/// taken as unusable until [`probe`] tries it.
pub fn backends(encoders: &str, decoders: &str) -> Vec<FfmpegBackend> {
    let enc = listed(encoders);
    let dec = listed(decoders);
    let mut out = Vec::new();
    for (id, enc_suffix, dec_suffix) in KNOWN {
        let names: Vec<String> = enc
            .iter()
            .filter(|(n, _)| n.ends_with(enc_suffix))
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut encoders: Vec<CodecId> = enc
            .iter()
            .filter(|(n, _)| n.ends_with(enc_suffix))
            .filter_map(|(_, c)| *c)
            .collect();
        encoders.dedup();
        let mut decoders: Vec<CodecId> = dec_suffix
            .map(|s| {
                dec.iter()
                    .filter(|(n, _)| n.ends_with(s))
                    .filter_map(|(_, c)| *c)
                    .collect()
            })
            .unwrap_or_default();
        decoders.dedup();
        out.push(FfmpegBackend {
            id,
            encoder_names: names,
            encoders,
            decoders,
            unavailable: Some("not tried yet".into()),
        });
    }
    out
}

/// Tries a one-frame H.264 (else the first) encode through `b` with the
/// ffmpeg at `ffmpeg`; `b.unavailable` says why it failed, or is cleared.
pub fn probe(ffmpeg: &Path, b: &mut FfmpegBackend) {
    let Some(name) = b
        .encoder_names
        .iter()
        .find(|n| n.starts_with("h264"))
        .or(b.encoder_names.first())
        .cloned()
    else {
        return;
    };
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-v", "error"]);
    if b.id == "vaapi" {
        cmd.args(["-vaapi_device", "/dev/dri/renderD128"]);
    }
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        "color=s=256x256:d=0.1",
        "-frames:v",
        "1",
    ]);
    if b.id == "vaapi" {
        cmd.args(["-vf", "format=nv12,hwupload"]);
    }
    cmd.args(["-c:v", &name, "-f", "null", "-"]);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    b.unavailable = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            // "[h264_nvenc @ 0x...] Cannot load libcuda.so.1": the words only.
            let why = first.split_once("] ").map_or(first, |(_, w)| w);
            Some(format!("a test encode with {name} failed: {why}"))
        }
        Err(e) => Some(format!("{} cannot run: {e}", ffmpeg.display())),
    };
}

/// Every backend the ffmpeg at `ffmpeg` offers, each tried.
pub fn detect(ffmpeg: &Path) -> Result<Vec<FfmpegBackend>, String> {
    let list = |what: &str| -> Result<String, String> {
        let o = Command::new(ffmpeg)
            .args(["-hide_banner", what])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("{} cannot run: {e}", ffmpeg.display()))?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let mut found = backends(&list("-encoders")?, &list("-decoders")?);
    for b in &mut found {
        probe(ffmpeg, b);
    }
    Ok(found)
}

/// `arcly hwaccel [--ffmpeg PATH]`: the report.
pub fn run(ffmpeg: &Path) -> Result<String, String> {
    let found = detect(ffmpeg)?;
    if found.is_empty() {
        return Ok(format!("{} offers no hardware encoder", ffmpeg.display()));
    }
    let names = |c: &[CodecId]| -> String {
        let v: Vec<&str> = c.iter().map(|c| c.name()).collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    };
    let mut out = String::new();
    for b in &found {
        out.push_str(&format!(
            "{}: encodes {}; decodes {}; {}\n",
            b.id(),
            names(b.supported_encoders()),
            names(b.supported_decoders()),
            match &b.unavailable {
                None => "available".to_string(),
                Some(why) => format!("not available: {why}"),
            }
        ));
    }
    Ok(out.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_ENC: &str = include_str!("../testdata/hwaccel/debian-5.1-encoders.txt");
    const DEBIAN_DEC: &str = include_str!("../testdata/hwaccel/debian-5.1-decoders.txt");
    const FF9_ENC: &str = include_str!("../testdata/hwaccel/imageio-ffmpeg-encoders.txt");
    const FF9_DEC: &str = include_str!("../testdata/hwaccel/imageio-ffmpeg-decoders.txt");
    const SOFT_ENC: &str = include_str!("../testdata/hwaccel/software-only-encoders.txt");

    fn ids(b: &[FfmpegBackend]) -> Vec<&'static str> {
        b.iter().map(|b| b.id()).collect()
    }

    #[test]
    fn debians_ffmpeg_names_nvenc_vaapi_qsv_and_v4l2m2m() {
        let b = backends(DEBIAN_ENC, DEBIAN_DEC);
        assert_eq!(ids(&b), ["nvenc", "vaapi", "qsv", "v4l2m2m"]);
        let nvenc = &b[0];
        assert!(nvenc.encoder_names.contains(&"h264_nvenc".to_string()));
        assert_eq!(nvenc.supported_encoders(), [CodecId::H264, CodecId::H265]);
        assert!(nvenc.supported_decoders().contains(&CodecId::H264));
        // Untried is unusable.
        assert!(!nvenc.is_available());
        let vaapi = &b[1];
        assert_eq!(
            vaapi.supported_encoders(),
            [CodecId::H264, CodecId::H265, CodecId::Vp9]
        );
        assert!(vaapi.supported_decoders().is_empty());
    }

    #[test]
    fn ffmpeg_9_adds_amf_and_av1() {
        let b = backends(FF9_ENC, FF9_DEC);
        assert_eq!(ids(&b), ["nvenc", "vaapi", "qsv", "amf", "v4l2m2m"]);
        assert!(b[0].supported_encoders().contains(&CodecId::Av1));
    }

    #[test]
    fn a_software_only_build_has_no_backend() {
        assert!(backends(SOFT_ENC, "").is_empty());
        assert!(!SOFT_ENC.contains("h264_nvenc"));
        assert!(SOFT_ENC.contains("libx264"));
    }

    #[test]
    fn a_failed_test_encode_says_why() {
        // A stand-in ffmpeg that fails as this machine's does without a GPU.
        let dir = std::env::temp_dir().join(format!("arcly-hw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let fake = dir.join("ffmpeg");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho '[h264_nvenc @ 0x1] Cannot load libcuda.so.1' >&2\nexit 1\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let chmod = Command::new("chmod").arg("+x").arg(&fake).status();
        assert!(matches!(chmod, Ok(s) if s.success()), "chmod: {chmod:?}");
        let mut b = backends(DEBIAN_ENC, DEBIAN_DEC).remove(0);
        probe(&fake, &mut b);
        assert!(!b.is_available());
        assert_eq!(
            b.unavailable.as_deref(),
            Some("a test encode with h264_nvenc failed: Cannot load libcuda.so.1")
        );
        let mut b = backends(DEBIAN_ENC, DEBIAN_DEC).remove(0);
        probe(&dir.join("missing"), &mut b);
        assert!(b
            .unavailable
            .as_deref()
            .is_some_and(|w| w.contains("cannot run")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
