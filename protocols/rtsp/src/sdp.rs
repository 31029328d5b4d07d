//! The subset of SDP (RFC 8866) an RTSP session describes its media with:
//! media sections (`m=`), their payload type, `a=rtpmap`, `a=fmtp` and
//! `a=control` (RFC 2326 §C.1), read from an ANNOUNCE or a DESCRIBE answer
//! and written for a DESCRIBE or an ANNOUNCE of ours.

use arcly_core::frame::{CodecId, TrackSet};

use crate::payload;

/// At most this many media sections are read from one description.
pub const MAX_MEDIA: usize = 8;

/// One media section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `video`, `audio`, `application`, ...
    pub kind: String,
    /// The first payload type of the `m=` line.
    pub payload_type: u8,
    /// The encoding name of `a=rtpmap` (`H264`, `MPEG4-GENERIC`, `opus`),
    /// or the static type's name when there is no rtpmap.
    pub encoding: String,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Audio channels (1 when not given).
    pub channels: u8,
    /// The `a=fmtp` parameters, in order.
    pub fmtp: Vec<(String, String)>,
    /// `a=control`, if any.
    pub control: Option<String>,
}

impl Media {
    /// The kernel's codec for this section's encoding, if it is one we
    /// carry.
    pub fn codec(&self) -> Option<CodecId> {
        let e = self.encoding.to_ascii_uppercase();
        match (self.kind.as_str(), e.as_str()) {
            ("video", "H264") => Some(CodecId::H264),
            ("video", "H265") => Some(CodecId::H265),
            ("audio", "MPEG4-GENERIC") => Some(CodecId::Aac),
            ("audio", "OPUS") => Some(CodecId::Opus),
            _ => None,
        }
    }
}

/// A session description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Description {
    /// The session-level `a=control`, if any.
    pub control: Option<String>,
    /// The media sections, in order.
    pub media: Vec<Media>,
}

/// Why a description could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not text.
    #[error("the description is not UTF-8")]
    NotText,
    /// An `m=` line that does not parse.
    #[error("bad media line {0:?}")]
    MediaLine(String),
    /// More than [`MAX_MEDIA`] media sections.
    #[error("more than {MAX_MEDIA} media sections")]
    TooManyMedia,
}

/// Reads a description.
pub fn parse(data: &[u8]) -> Result<Description, SdpError> {
    let text = std::str::from_utf8(data).map_err(|_| SdpError::NotText)?;
    let mut d = Description::default();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            if d.media.len() >= MAX_MEDIA {
                return Err(SdpError::TooManyMedia);
            }
            let mut it = m.split_whitespace();
            let kind = it.next().unwrap_or("");
            let _port = it.next();
            let _proto = it.next();
            let pt = it
                .next()
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| *p < 128)
                .ok_or_else(|| SdpError::MediaLine(m.chars().take(100).collect()))?;
            let (encoding, clock_rate, channels) = static_type(pt);
            d.media.push(Media {
                kind: kind.to_string(),
                payload_type: pt,
                encoding: encoding.to_string(),
                clock_rate,
                channels,
                fmtp: Vec::new(),
                control: None,
            });
            continue;
        }
        let Some(a) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = a.split_once(':').unwrap_or((a, ""));
        match (name, d.media.last_mut()) {
            ("control", None) => d.control = Some(value.trim().to_string()),
            ("control", Some(m)) => m.control = Some(value.trim().to_string()),
            ("rtpmap", Some(m)) => {
                let Some((pt, map)) = value.split_once(' ') else {
                    continue;
                };
                if pt.trim().parse::<u8>().ok() != Some(m.payload_type) {
                    continue;
                }
                let mut p = map.trim().split('/');
                m.encoding = p.next().unwrap_or("").to_string();
                m.clock_rate = p.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                m.channels = p.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            }
            ("fmtp", Some(m)) => {
                let Some((pt, params)) = value.split_once(' ') else {
                    continue;
                };
                if pt.trim().parse::<u8>().ok() != Some(m.payload_type) {
                    continue;
                }
                m.fmtp = params
                    .split(';')
                    .filter_map(|kv| {
                        let kv = kv.trim();
                        if kv.is_empty() {
                            return None;
                        }
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    })
                    .take(32)
                    .collect();
            }
            _ => {}
        }
    }
    Ok(d)
}

/// The encoding, clock rate and channels of a static payload type
/// (RFC 3551 §6), for an `m=` line without rtpmap.
fn static_type(pt: u8) -> (&'static str, u32, u8) {
    match pt {
        0 => ("PCMU", 8000, 1),
        8 => ("PCMA", 8000, 1),
        14 => ("MPA", 90_000, 1),
        26 => ("JPEG", 90_000, 1),
        32 => ("MPV", 90_000, 1),
        33 => ("MP2T", 90_000, 1),
        _ => ("", 0, 1),
    }
}

/// The first payload type we use for a track with index `i` (dynamic).
pub fn payload_type(i: usize) -> u8 {
    96 + i as u8
}

/// Writes a description of `tracks` for a DESCRIBE answer or an ANNOUNCE:
/// one media section per track we can packetize, with `a=control:trackID=N`
/// where N is the track's id. `origin_ip` is the address in `o=` and `c=`.
pub fn write(tracks: &TrackSet, origin_ip: &str, session_id: u64, name: &str) -> String {
    let ip_kind = if origin_ip.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let mut s = format!(
        "v=0\r\no={} {session_id} 1 IN {ip_kind} {origin_ip}\r\ns={name}\r\nc=IN {ip_kind} {}\r\nt=0 0\r\na=tool:arcly\r\na=range:npt=0-\r\na=control:*\r\n",
        "-",
        if ip_kind == "IP4" { "0.0.0.0" } else { "::" }
    );
    for (i, t) in tracks.iter().enumerate() {
        let Some(map) = payload::rtpmap(t) else {
            continue;
        };
        let kind = if t.codec.is_video() { "video" } else { "audio" };
        let pt = payload_type(i);
        s.push_str(&format!(
            "m={kind} 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {map}\r\n"
        ));
        if let Some(f) = payload::fmtp(t) {
            s.push_str(&format!("a=fmtp:{pt} {f}\r\n"));
        }
        s.push_str(&format!("a=control:trackID={}\r\n", t.id.0));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_ffmpeg_announces() {
        let sdp = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADKzZQ8Z4QAAAAwBAAAAMg8UKZYA=,aOvjyyLA; profile-level-id=64000C\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/1\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=120800\r\na=control:streamid=1\r\n";
        let d = parse(sdp).unwrap();
        assert_eq!(d.media.len(), 2);
        let v = &d.media[0];
        assert_eq!(v.codec(), Some(CodecId::H264));
        assert_eq!(v.clock_rate, 90_000);
        assert_eq!(v.control.as_deref(), Some("streamid=0"));
        assert_eq!(v.fmtp[1].0, "sprop-parameter-sets");
        let a = &d.media[1];
        assert_eq!(a.codec(), Some(CodecId::Aac));
        assert_eq!((a.clock_rate, a.channels), (44_100, 1));
        assert_eq!(
            a.fmtp
                .iter()
                .find(|(k, _)| k == "config")
                .map(|(_, v)| v.as_str()),
            Some("120800")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            let _ = parse(&data);
        }
    }
}
