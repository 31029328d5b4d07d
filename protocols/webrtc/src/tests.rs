//! Two str0m peers, both on our crypto provider, over an in-memory link:
//! ICE, DTLS (dimpl) with our certificates, SRTP keys from the DTLS
//! exporter, and media both ways through our ciphers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::crypto;

struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    connected: bool,
    got: Vec<Vec<u8>>,
    wake: Instant,
    /// Key frame requests (PLI, FIR) the peer got.
    key_requests: usize,
}

impl Peer {
    fn new(addr: &str, lite: bool, now: Instant) -> Peer {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto::shared_provider())
            .set_ice_lite(lite)
            .build();
        let addr: SocketAddr = addr.parse().expect("addr");
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        Peer {
            rtc,
            addr,
            connected: false,
            got: Vec::new(),
            wake: now,
            key_requests: 0,
        }
    }

    /// Everything the peer has to say now: datagrams out, events kept.
    fn drain(&mut self, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        loop {
            match self.rtc.poll_output().expect("poll_output") {
                Output::Timeout(t) => {
                    self.wake = t;
                    return;
                }
                Output::Transmit(t) => out.push((t.source, t.destination, t.contents.to_vec())),
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    self.connected = false;
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaData(d)) => self.got.push(d.data),
                Output::Event(Event::KeyframeRequest(_)) => self.key_requests += 1,
                Output::Event(_) => {}
            }
        }
    }
}

/// Runs both peers until `done` or five virtual seconds pass.
fn run(a: &mut Peer, b: &mut Peer, now: &mut Instant, done: impl Fn(&Peer, &Peer) -> bool) {
    let end = *now + Duration::from_secs(5);
    while *now < end && !done(a, b) {
        let mut wire = Vec::new();
        a.drain(&mut wire);
        b.drain(&mut wire);
        if wire.is_empty() {
            *now = (*now + Duration::from_millis(1)).max(a.wake.min(b.wake));
            for p in [&mut *a, &mut *b] {
                if p.wake <= *now {
                    p.rtc.handle_input(Input::Timeout(*now)).expect("timeout");
                }
            }
            continue;
        }
        for (from, to, bytes) in wire {
            let p = if to == a.addr { &mut *a } else { &mut *b };
            let r = Receive::new(Protocol::Udp, from, to, &bytes).expect("a datagram str0m reads");
            p.rtc.handle_input(Input::Receive(*now, r)).expect("input");
        }
    }
}

fn opus_pt(rtc: &mut Rtc, mid: Mid) -> str0m::format::PayloadParams {
    rtc.writer(mid)
        .expect("a writer")
        .payload_params()
        .find(|p| p.spec().codec == Codec::Opus)
        .copied()
        .expect("Opus negotiated")
}

#[test]
fn a_certificate_is_made_without_a_c_library() {
    let a = crypto::generate_certificate().expect("a certificate");
    let b = crypto::generate_certificate().expect("a certificate");
    // DER: a SEQUENCE; a fresh key and serial each time.
    assert_eq!(a.certificate[0], 0x30);
    assert_ne!(a.certificate, b.certificate);
    assert_ne!(a.private_key, b.private_key);
}

#[test]
fn two_peers_on_our_provider_connect_and_carry_media_over_srtp() {
    let mut now = Instant::now();
    let mut server = Peer::new("10.0.0.1:8189", true, now);
    let mut client = Peer::new("10.0.0.2:50000", false, now);

    let mut sdp = client.rtc.sdp_api();
    let mid = sdp.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = sdp.apply().expect("an offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("the offer parses");
    let answer = server.rtc.sdp_api().accept_offer(offer).expect("an answer");
    client
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("the answer is taken");

    run(&mut client, &mut server, &mut now, |c, s| {
        c.connected && s.connected
    });
    assert!(
        client.connected && server.connected,
        "no DTLS association in 5 s"
    );

    let pt = opus_pt(&mut client.rtc, mid).pt();
    let frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 60 + usize::from(i)]).collect();
    for (i, f) in frames.iter().enumerate() {
        let t = MediaTime::new(960 * i as u64, Frequency::FORTY_EIGHT_KHZ);
        client
            .rtc
            .writer(mid)
            .expect("a writer")
            .write(pt, now, t, f.clone())
            .expect("written");
        run(&mut client, &mut server, &mut now, |_, s| s.got.len() > i);
    }
    assert_eq!(server.got, frames, "what arrived is what was sent");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn aes_cm_is_the_block_cipher_over_a_big_endian_counter() {
    let p = crypto::provider();
    let key = [0x2b; 16];
    let mut iv = [0u8; 16];
    iv[14] = 0xff;
    iv[15] = 0xff;
    let mut c = p
        .srtp_provider
        .aes_128_cm_sha1_80()
        .create_cipher(key, true);
    let zeros = [0u8; 48];
    let mut ks = [0u8; 48];
    c.encrypt(&iv, &zeros, &mut ks).expect("encrypt");
    // Keystream block n is AES(key, IV + n), the counter carrying across
    // bytes.
    for n in 0..3u8 {
        let mut ctr = iv;
        let low = u16::from_be_bytes([iv[14], iv[15]]).wrapping_add(u16::from(n));
        ctr[14..].copy_from_slice(&low.to_be_bytes());
        if n > 0 {
            ctr[13] = 1;
        }
        let mut block = [0u8; 16];
        p.srtp_provider
            .srtp_aes_128_ecb_round(&key, &ctr, &mut block);
        assert_eq!(
            &ks[16 * usize::from(n)..16 * usize::from(n) + 16],
            &block,
            "block {n}"
        );
    }
    // Decryption is the same operation.
    let msg = b"an RTP payload of some length, not a multiple of 16";
    let mut sealed = vec![0u8; msg.len()];
    c.encrypt(&iv, msg, &mut sealed).expect("encrypt");
    let mut d = p
        .srtp_provider
        .aes_128_cm_sha1_80()
        .create_cipher(key, false);
    let mut opened = vec![0u8; msg.len()];
    d.decrypt(&iv, &sealed, &mut opened).expect("decrypt");
    assert_eq!(&opened[..], &msg[..]);
}

#[test]
fn aes_gcm_matches_the_published_vector_and_refuses_a_changed_byte() {
    let p = crypto::provider();
    // GCM's specification, test case 2: zero key, IV and block.
    let mut c = p
        .srtp_provider
        .aead_aes_128_gcm()
        .create_cipher([0; 16], true);
    let mut out = [0u8; 32];
    c.encrypt(&[0; 12], &[], &[0; 16], &mut out)
        .expect("encrypt");
    assert_eq!(
        out.to_vec(),
        hex("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf")
    );
    // With associated data given in two pieces, both ciphers, 128 and 256.
    let msg = b"SRTP payload";
    let aad = b"RTP header bytes";
    let mut sealed = vec![0u8; msg.len() + 16];
    let mut c256 = p
        .srtp_provider
        .aead_aes_256_gcm()
        .create_cipher([7; 32], true);
    c256.encrypt(&[1; 12], aad, msg, &mut sealed)
        .expect("encrypt");
    let mut d256 = p
        .srtp_provider
        .aead_aes_256_gcm()
        .create_cipher([7; 32], false);
    let mut opened = vec![0u8; msg.len()];
    let n = d256
        .decrypt(&[1; 12], &[&aad[..4], &aad[4..]], &sealed, &mut opened)
        .expect("decrypt");
    assert_eq!(&opened[..n], &msg[..]);
    sealed[3] ^= 1;
    assert!(d256
        .decrypt(&[1; 12], &[aad], &sealed, &mut opened)
        .is_err());
    let mut d128 = p
        .srtp_provider
        .aead_aes_128_gcm()
        .create_cipher([0; 16], false);
    assert!(d128.decrypt(&[0; 12], &[], &[0; 8], &mut opened).is_err());
}

#[test]
fn hmac_sha1_over_pieces_matches_rfc_2202() {
    let p = crypto::provider();
    let mac = p
        .sha1_hmac_provider
        .sha1_hmac(&[0x0b; 20], &[b"Hi ", b"There"]);
    assert_eq!(
        mac.to_vec(),
        hex("b617318655057264e28bc0b6fb378c8ef146be00")
    );
    let d = p.sha256_provider.sha256(b"abc");
    assert_eq!(
        d.to_vec(),
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
}

/// The parameter sets ffmpeg 5.1's libx264 announced in the committed RTSP
/// publish capture (160x120, High).
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0b, 0xac, 0xb2, 0x05, 0x08, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00,
    0x80, 0x00, 0x00, 0x19, 0x07, 0x8a, 0x15, 0x24,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0];

/// A WHIP publisher (a str0m peer on our provider) through the signalling
/// and the endpoint into a session: the host's publish request, then
/// canonical frames.
#[test]
fn a_whip_publisher_gets_through_signalling_and_the_endpoint_to_canonical_frames() {
    use arcly_core::endpoint::{Endpoint, Route, Unrouted};
    use arcly_core::session::{Input as SInput, Session, SessionEvent};
    use arcly_core::signal::{Offer, Signalling};
    use arcly_core::time::Instant as HInstant;
    use bytes::BytesMut;

    let server: SocketAddr = "10.0.0.1:8189".parse().expect("addr");
    let (mut ep, sig) = crate::webrtc(crate::WebRtcConfig {
        candidates: vec![server],
        ..Default::default()
    });
    let origin = Instant::now();
    let mut now = origin;
    let host = |t: Instant| HInstant::from_micros(t.duration_since(origin).as_micros() as u64);
    let mut client = Peer::new("10.0.0.2:50000", false, now);
    let mut sdp = client.rtc.sdp_api();
    let vmid = sdp.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let amid = sdp.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = sdp.apply().expect("an offer");
    let answer = sig
        .offer(
            host(now),
            Offer {
                action: arcly_core::engine::Action::Publish,
                app: "live".into(),
                stream: "cam".into(),
                token: Some("t".into()),
                user: None,
                password: None,
                sdp: offer.to_sdp_string(),
            },
        )
        .expect("an answer");
    assert_eq!(answer.id.len(), 16);
    let answer_sdp = str0m::change::SdpAnswer::from_sdp_string(&answer.sdp).expect("parses");
    client
        .rtc
        .sdp_api()
        .accept_answer(pending, answer_sdp)
        .expect("taken");

    let mut session: Option<crate::PeerSession> = None;
    let mut asked = Vec::new();
    let mut frames = Vec::new();
    let mut tracks = Vec::new();
    let mut step = |client: &mut Peer,
                    session: &mut Option<crate::PeerSession>,
                    now: Instant,
                    asked: &mut Vec<_>,
                    frames: &mut Vec<_>,
                    tracks: &mut Vec<_>| {
        let mut wire = Vec::new();
        client.drain(&mut wire);
        for (from, to, bytes) in wire {
            assert_eq!(to, server);
            let data = BytesMut::from(&bytes[..]);
            match ep.route(host(now), server, from, &bytes) {
                Route::Session(k) if session.is_some() => {
                    assert_eq!(k, answer.id);
                    let s = session.as_mut().expect("a session");
                    s.handle_input(
                        host(now),
                        SInput::Datagram {
                            from,
                            local: server,
                            data,
                        },
                    );
                }
                Route::Session(_) | Route::Endpoint => {
                    match ep.handle_unrouted(host(now), server, from, data) {
                        Unrouted::Accept {
                            key,
                            session: mut s,
                            input,
                        } => {
                            assert_eq!(key, answer.id);
                            if let Some(d) = input {
                                s.handle_input(
                                    host(now),
                                    SInput::Datagram {
                                        from,
                                        local: server,
                                        data: d,
                                    },
                                );
                            }
                            *session = Some(s);
                        }
                        Unrouted::Handled => {}
                    }
                }
                Route::Drop => {}
            }
        }
        let Some(s) = session.as_mut() else { return };
        if s.poll_timeout().is_some_and(|t| t <= host(now)) {
            s.handle_timeout(host(now));
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                SessionEvent::Request(r) => {
                    asked.push((r.app.clone(), r.stream.clone(), r.token.clone()));
                    s.accept(host(now), r.id);
                }
                SessionEvent::Frame(f) => frames.push(f),
                SessionEvent::Tracks(t) => tracks.push(*t),
                _ => {}
            }
        }
        while let Some(t) = s.poll_transmit() {
            let to = t.to.expect("a datagram");
            let r = Receive::new(Protocol::Udp, server, to, &t.data).expect("str0m reads it");
            client
                .rtc
                .handle_input(Input::Receive(now, r))
                .expect("input");
        }
    };
    let end = now + Duration::from_secs(5);
    while now < end && asked.is_empty() {
        step(
            &mut client,
            &mut session,
            now,
            &mut asked,
            &mut frames,
            &mut tracks,
        );
        now += Duration::from_millis(1);
        client
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("timeout");
    }
    assert_eq!(asked, [("live".into(), "cam".into(), Some("t".into()))]);

    // Ten pictures at 30 fps, the first a key frame with its parameter
    // sets (slice bytes with no zeros, so no start code hides in them);
    // 20 ms Opus packets.
    let vpt = client
        .rtc
        .writer(vmid)
        .expect("writer")
        .payload_params()
        .find(|p| p.spec().codec == Codec::H264)
        .copied()
        .expect("H.264 negotiated")
        .pt();
    let apt = opus_pt(&mut client.rtc, amid).pt();
    // Audio comes first, as from a browser whose first key frame is being
    // encoded: no tracks are announced until the video's are known.
    for i in 0..5u64 {
        let a = MediaTime::new(960 * i, Frequency::FORTY_EIGHT_KHZ);
        client
            .rtc
            .writer(amid)
            .expect("writer")
            .write(apt, now, a, vec![0xfc; 40])
            .expect("audio written");
        for _ in 0..20 {
            step(
                &mut client,
                &mut session,
                now,
                &mut asked,
                &mut frames,
                &mut tracks,
            );
            now += Duration::from_millis(1);
            client
                .rtc
                .handle_input(Input::Timeout(now))
                .expect("timeout");
        }
    }
    assert!(tracks.is_empty(), "announced before the video: {tracks:?}");
    assert!(
        frames.is_empty(),
        "{} frames before the video",
        frames.len()
    );
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let slice: Vec<u8> = if i == 0 {
            [&[0x65u8, 0x88][..], &[0x11 + i as u8; 300][..]].concat()
        } else {
            [&[0x41u8, 0x9a][..], &[0x11 + i as u8; 100][..]].concat()
        };
        let mut au = Vec::new();
        if i == 0 {
            for ps in [SPS, PPS] {
                au.extend_from_slice(&[0, 0, 0, 1]);
                au.extend_from_slice(ps);
            }
        }
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&slice);
        sent.push(slice);
        let t = MediaTime::new(3000 * i, Frequency::NINETY_KHZ);
        client
            .rtc
            .writer(vmid)
            .expect("writer")
            .write(vpt, now, t, au)
            .expect("video written");
        let a = MediaTime::new(960 * (i + 5), Frequency::FORTY_EIGHT_KHZ);
        client
            .rtc
            .writer(amid)
            .expect("writer")
            .write(apt, now, a, vec![0xfc; 40])
            .expect("audio written");
        for _ in 0..33 {
            step(
                &mut client,
                &mut session,
                now,
                &mut asked,
                &mut frames,
                &mut tracks,
            );
            now += Duration::from_millis(1);
            client
                .rtc
                .handle_input(Input::Timeout(now))
                .expect("timeout");
        }
    }
    for _ in 0..200 {
        step(
            &mut client,
            &mut session,
            now,
            &mut asked,
            &mut frames,
            &mut tracks,
        );
        now += Duration::from_millis(1);
        client
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("timeout");
    }
    let video: Vec<_> = frames.iter().filter(|f| f.codec.is_video()).collect();
    let audio: Vec<_> = frames.iter().filter(|f| f.codec.is_audio()).collect();
    assert!(video.len() >= 9, "{} pictures", video.len());
    assert!(video[0].is_key(), "the first picture is the key frame");
    // Canonical: length-prefixed, parameter sets taken out.
    let first = &video[0].payload;
    assert_eq!(&first[..4], &(sent[0].len() as u32).to_be_bytes());
    assert_eq!(&first[4..], &sent[0][..]);
    // 30 fps, exactly.
    let steps: Vec<i64> = video
        .windows(2)
        .map(|w| w[1].pts.ticks - w[0].pts.ticks)
        .collect();
    assert!(steps.iter().all(|s| *s == 3000), "{steps:?}");
    assert!(audio.len() >= 9, "{} audio packets", audio.len());
    // Announced once, with both.
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    let last = tracks.last().expect("tracks announced");
    let v = last.video().expect("a video track");
    assert_eq!(v.codec, arcly_core::frame::CodecId::H264);
    assert_eq!((v.params.width, v.params.height), (160, 120));
    assert!(last
        .audio()
        .is_some_and(|a| a.codec == arcly_core::frame::CodecId::Opus));

    // A player's key frame request reaches the publisher as a PLI (one
    // came when it was accepted), and no more than two a second.
    let before = client.key_requests;
    assert!(before >= 1, "no PLI when the publish was accepted");
    for _ in 0..3 {
        session
            .as_mut()
            .expect("a session")
            .handle_key_frame_request(host(now));
        for _ in 0..20 {
            step(
                &mut client,
                &mut session,
                now,
                &mut asked,
                &mut frames,
                &mut tracks,
            );
            now += Duration::from_millis(1);
            client
                .rtc
                .handle_input(Input::Timeout(now))
                .expect("timeout");
        }
    }
    assert_eq!(client.key_requests, before + 1);

    // Its link is in the stats while it lasts.
    use arcly_core::engine::LinkSource;
    let links = sig.stats().links();
    assert!(
        links.iter().any(|l| l.protocol == "webrtc"
            && l.publishing
            && l.resource == "live/cam"
            && l.figures.pkt_recv > 0),
        "{links:?}"
    );
    // A DELETE of the resource ends the session within a second.
    assert!(sig.end(&answer.id));
    let s = session.as_mut().expect("a session");
    let later = host(now).saturating_add(Duration::from_secs(2));
    s.handle_timeout(later);
    assert!(s.is_closed());
    assert!(sig.stats().links().is_empty());
    assert!(!sig.end("nope"));
}

#[test]
fn ffmpegs_recorded_offers_are_answered_in_the_dtls_role_they_leave_us() {
    use arcly_core::signal::{Offer, Signalling};
    for (file, ours) in [
        ("ffmpeg9_whip_offer.sdp", "a=setup:active"),
        ("ffmpeg9_whip_offer_dtls_active.sdp", "a=setup:passive"),
    ] {
        let path = format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
        let sdp = std::fs::read_to_string(&path).expect("the recorded offer");
        // What str0m's parser refuses as ffmpeg writes it.
        assert!(sdp.contains("o=FFmpeg ") && sdp.contains("s=FFmpegPublishSession"));
        let (_ep, sig) = crate::webrtc(crate::WebRtcConfig {
            candidates: vec!["127.0.0.1:8189".parse().expect("addr")],
            ..Default::default()
        });
        let answer = sig
            .offer(
                arcly_core::time::Instant::ZERO,
                Offer {
                    action: arcly_core::engine::Action::Publish,
                    app: "live".into(),
                    stream: "cam".into(),
                    token: None,
                    user: None,
                    password: None,
                    sdp,
                },
            )
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let a = answer.sdp;
        assert!(a.contains(ours), "{file}: {a}");
        assert!(a.contains("a=ice-lite"), "{file}: {a}");
        assert!(
            a.contains(&format!("a=ice-ufrag:{}", answer.id)),
            "{file}: {a}"
        );
        assert!(a.contains("127.0.0.1 8189 typ host"), "{file}: {a}");
        assert!(
            a.contains("H264/90000") && a.contains("opus/48000/2"),
            "{file}: {a}"
        );
        assert!(a.contains("a=recvonly"), "{file}: {a}");
    }
}

#[test]
fn a_flood_of_offers_holds_a_bounded_number_and_then_gets_busy() {
    use arcly_core::endpoint::Endpoint;
    use arcly_core::signal::{Offer, OfferError, Signalling};
    use arcly_core::time::Instant as HInstant;
    let path = format!(
        "{}/testdata/ffmpeg9_whip_offer.sdp",
        env!("CARGO_MANIFEST_DIR")
    );
    let sdp = std::fs::read_to_string(&path).expect("the recorded offer");
    let (mut ep, sig) = crate::webrtc(crate::WebRtcConfig {
        candidates: vec!["127.0.0.1:8189".parse().expect("addr")],
        max_waiting: 8,
        connect_timeout_us: 1_000_000,
        ..Default::default()
    });
    let offer = || Offer {
        action: arcly_core::engine::Action::Publish,
        app: "live".into(),
        stream: "cam".into(),
        token: None,
        user: None,
        password: None,
        sdp: sdp.clone(),
    };
    for _ in 0..8 {
        sig.offer(HInstant::ZERO, offer()).expect("answered");
    }
    assert_eq!(sig.offer(HInstant::ZERO, offer()), Err(OfferError::Busy));
    // Unanswered by their peers, they expire, and room comes back.
    assert_eq!(ep.poll_timeout(), Some(HInstant::from_micros(1_000_000)));
    ep.handle_timeout(HInstant::from_micros(1_000_000));
    assert!(sig.offer(HInstant::from_micros(1_000_001), offer()).is_ok());
}

/// What a WHEP player got: the media payloads it depacketized, the
/// session's notices, and the play requests the host saw.
struct PlayRun {
    got: Vec<Vec<u8>>,
    notices: Vec<String>,
    asked: usize,
    /// Key frames the session asked the stream for.
    key_wanted: usize,
}

/// An AAC-to-Opus stand-in: each AAC frame becomes an Opus packet
/// `[0xf8, 0xaa, n]` at the same time.
struct FakeOpus(
    std::collections::VecDeque<arcly_core::frame::MediaFrame>,
    u8,
);

impl arcly_core::transcode::AudioTranscoder for FakeOpus {
    fn start(
        &mut self,
        input: &arcly_core::frame::TrackInfo,
    ) -> Result<arcly_core::frame::TrackInfo, arcly_core::transcode::TranscodeError> {
        assert_eq!(input.codec, arcly_core::frame::CodecId::Aac);
        Ok(arcly_core::frame::TrackInfo::new(
            input.id,
            arcly_core::frame::CodecId::Opus,
            arcly_core::time::Timescale::new(48_000).expect("ts"),
            arcly_core::media::codec::opus::OpusHead::new(2, 0, 48_000).to_bytes(),
        ))
    }

    fn push(
        &mut self,
        f: &arcly_core::frame::MediaFrame,
    ) -> Result<(), arcly_core::transcode::TranscodeError> {
        let ts = arcly_core::time::Timescale::new(48_000).expect("ts");
        self.0.push_back(arcly_core::frame::MediaFrame::audio(
            f.track,
            arcly_core::frame::CodecId::Opus,
            f.pts.rescale(ts),
            bytes::Bytes::from(vec![0xf8, 0xaa, self.1]),
        ));
        self.1 += 1;
        Ok(())
    }

    fn poll(&mut self) -> Option<arcly_core::frame::MediaFrame> {
        self.0.pop_front()
    }
}

/// A WHEP player (a str0m peer receiving) through signalling and the
/// endpoint: the host's play request, then frames from the bus out as RTP
/// the player depacketizes: H.264 with its parameter sets before the key
/// frame, Opus as it was.
#[test]
fn a_whep_player_gets_the_bus_frames_as_rtp() {
    let run = whep_play(None, false, false);
    assert_eq!(run.asked, 1);
    assert_eq!(
        run.key_wanted, 1,
        "the player's PLIs did not reach the stream"
    );
    assert_eq!(run.notices, Vec::<String>::new());
    let pictures: Vec<&Vec<u8>> = run.got.iter().filter(|d| d.len() > 100).collect();
    let sounds: Vec<&Vec<u8>> = run.got.iter().filter(|d| d.len() < 10).collect();
    assert!(pictures.len() >= 5, "{} pictures", pictures.len());
    // The key frame: SPS, PPS, then the slice, in Annex B.
    let mut key = Vec::new();
    for nal in [SPS, PPS, &play_slice(0)[..]] {
        key.extend_from_slice(&[0, 0, 0, 1]);
        key.extend_from_slice(nal);
    }
    assert_eq!(pictures[0], &key);
    assert!(sounds.len() >= 5, "{} audio packets", sounds.len());
    assert_eq!(sounds[0], &vec![0xf8, 0, 0, 0]);
}

#[test]
fn a_whep_player_of_an_aac_source_gets_the_video_and_is_told_why_no_audio() {
    let run = whep_play(None, true, false);
    assert!(run.got.iter().filter(|d| d.len() > 100).count() >= 5);
    assert_eq!(run.got.iter().filter(|d| d.len() < 10).count(), 0);
    assert_eq!(
        run.notices,
        ["playing live/cam: its audio is aac, which WebRTC does not carry, and no transcoder to Opus is configured: this player gets video only"]
    );
}

#[test]
fn a_whep_player_of_an_aac_source_gets_opus_through_the_hosts_transcoder() {
    let factory = arcly_core::transcode::TranscoderFactory(std::sync::Arc::new(|from, to| {
        (from == arcly_core::frame::CodecId::Aac && to == arcly_core::frame::CodecId::Opus).then(
            || {
                Box::new(FakeOpus(Default::default(), 0))
                    as Box<dyn arcly_core::transcode::AudioTranscoder>
            },
        )
    }));
    let run = whep_play(Some(factory), true, false);
    let sounds: Vec<&Vec<u8>> = run.got.iter().filter(|d| d.len() < 10).collect();
    assert!(sounds.len() >= 5, "{} audio packets", sounds.len());
    assert_eq!(sounds[0], &vec![0xf8, 0xaa, 0]);
    assert_eq!(sounds[4], &vec![0xf8, 0xaa, 4]);
    assert_eq!(
        run.notices,
        ["playing live/cam: its audio is aac, transcoded to Opus for this player"]
    );
}

#[test]
fn a_whep_player_of_h264_with_b_frames_is_told_once() {
    let run = whep_play(None, false, true);
    assert!(run.got.iter().filter(|d| d.len() > 100).count() >= 5);
    assert_eq!(run.notices.len(), 1, "{:?}", run.notices);
    assert!(
        run.notices[0]
            .contains("its H.264 has B-frames, which browsers' WebRTC decoders cannot reorder"),
        "{:?}",
        run.notices
    );
}

/// The slice of test frame `i` (an IDR for 0).
fn play_slice(i: u8) -> Vec<u8> {
    let head: &[u8] = if i == 0 { &[0x65, 0x88] } else { &[0x41, 0x9a] };
    [head, &[0x11 + i; 200][..]].concat()
}

/// A player of six H.264 frames (with `b_frames`, presentation times
/// after their decode times) and six audio frames, Opus or (`aac`) AAC,
/// with `transcoder` as the host's.
fn whep_play(
    transcoder: Option<arcly_core::transcode::TranscoderFactory>,
    aac: bool,
    b_frames: bool,
) -> PlayRun {
    use arcly_core::bus::DeliveryRef;
    use arcly_core::endpoint::{Endpoint, Route, Unrouted};
    use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
    use arcly_core::media::codec::h264::AvcConfig;
    use arcly_core::media::codec::opus::OpusHead;
    use arcly_core::session::{Input as SInput, Session, SessionEvent};
    use arcly_core::signal::{Offer, Signalling};
    use arcly_core::time::{Instant as HInstant, MediaTime as HTime, Timescale};
    use bytes::{Bytes, BytesMut};

    let server: SocketAddr = "10.0.0.1:8189".parse().expect("addr");
    let (mut ep, sig) = crate::webrtc(crate::WebRtcConfig {
        candidates: vec![server],
        audio_transcoder: transcoder,
        ..Default::default()
    });
    let origin = Instant::now();
    let mut now = origin;
    let host = |t: Instant| HInstant::from_micros(t.duration_since(origin).as_micros() as u64);
    let mut client = Peer::new("10.0.0.2:50000", false, now);
    let mut sdp = client.rtc.sdp_api();
    let video_mid = sdp.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    sdp.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = sdp.apply().expect("an offer");
    let answer = sig
        .offer(
            host(now),
            Offer {
                action: arcly_core::engine::Action::Play,
                app: "live".into(),
                stream: "cam".into(),
                token: None,
                user: None,
                password: None,
                sdp: offer.to_sdp_string(),
            },
        )
        .expect("an answer");
    assert!(answer.sdp.contains("a=sendonly"), "{}", answer.sdp);
    let answer_sdp = str0m::change::SdpAnswer::from_sdp_string(&answer.sdp).expect("parses");
    client
        .rtc
        .sdp_api()
        .accept_answer(pending, answer_sdp)
        .expect("taken");

    let mut session: Option<crate::PeerSession> = None;
    let mut asked = 0;
    let mut notices = Vec::new();
    let mut key_wanted = 0;
    // One millisecond of both peers: datagrams each way, timeouts, events.
    let mut pump = |client: &mut Peer, session: &mut Option<crate::PeerSession>, now: Instant| {
        let mut wire = Vec::new();
        client.drain(&mut wire);
        for (from, _, bytes) in wire {
            let data = BytesMut::from(&bytes[..]);
            match (ep.route(host(now), server, from, &bytes), session.as_mut()) {
                (Route::Session(_), Some(s)) => s.handle_input(
                    host(now),
                    SInput::Datagram {
                        from,
                        local: server,
                        data,
                    },
                ),
                (Route::Drop, _) => {}
                _ => {
                    if let Unrouted::Accept {
                        session: mut s,
                        input,
                        ..
                    } = ep.handle_unrouted(host(now), server, from, data)
                    {
                        if let Some(d) = input {
                            s.handle_input(
                                host(now),
                                SInput::Datagram {
                                    from,
                                    local: server,
                                    data: d,
                                },
                            );
                        }
                        *session = Some(s);
                    }
                }
            }
        }
        if let Some(s) = session.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= host(now)) {
                s.handle_timeout(host(now));
            }
            while let Some(ev) = s.poll_event() {
                match ev {
                    SessionEvent::Request(r) => {
                        asked += 1;
                        s.accept(host(now), r.id);
                    }
                    SessionEvent::Notice(n) => notices.push(n),
                    SessionEvent::KeyFrameWanted => key_wanted += 1,
                    _ => {}
                }
            }
            while let Some(t) = s.poll_transmit() {
                let to = t.to.expect("a datagram");
                let r = Receive::new(Protocol::Udp, server, to, &t.data).expect("str0m reads it");
                client
                    .rtc
                    .handle_input(Input::Receive(now, r))
                    .expect("input");
            }
        }
        client
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("timeout");
    };
    let end = now + Duration::from_secs(5);
    while now < end && !(client.connected && session.as_ref().is_some_and(|s| !s.is_closed())) {
        pump(&mut client, &mut session, now);
        now += Duration::from_millis(1);
    }
    for _ in 0..50 {
        pump(&mut client, &mut session, now);
        now += Duration::from_millis(1);
    }
    assert!(client.connected, "no DTLS association");

    // The stream's tracks and frames, as the bus would hand them.
    let avcc = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    )
    .expect("avcC")
    .to_bytes();
    let mut set = TrackSet::new();
    set.upsert(TrackInfo::new(
        TrackId(0),
        CodecId::H264,
        Timescale::new(90_000).expect("ts"),
        avcc,
    ))
    .expect("video");
    set.upsert(if aac {
        TrackInfo::new(
            TrackId(1),
            CodecId::Aac,
            Timescale::new(48_000).expect("ts"),
            Bytes::from_static(&[0x11, 0x90]),
        )
    } else {
        TrackInfo::new(
            TrackId(1),
            CodecId::Opus,
            Timescale::new(48_000).expect("ts"),
            OpusHead::new(2, 0, 48_000).to_bytes(),
        )
    })
    .expect("audio");
    let set = std::sync::Arc::new(set);
    let s = session.as_mut().expect("a session");
    s.handle_delivery(host(now), DeliveryRef::Tracks(&set));
    for i in 0..6u8 {
        let body = play_slice(i);
        let mut lp = (body.len() as u32).to_be_bytes().to_vec();
        lp.extend_from_slice(&body);
        let mut v = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            i == 0,
            HTime::new(3000 * i64::from(i), Timescale::new(90_000).expect("ts")),
            Bytes::from(lp),
        );
        if b_frames {
            v.pts = HTime::new(
                3000 * i64::from(i) + 6000,
                Timescale::new(90_000).expect("ts"),
            );
        }
        let a = MediaFrame::audio(
            TrackId(1),
            if aac { CodecId::Aac } else { CodecId::Opus },
            HTime::new(960 * i64::from(i), Timescale::new(48_000).expect("ts")),
            Bytes::from(vec![0xf8, i, i, i]),
        );
        let s = session.as_mut().expect("a session");
        s.handle_delivery(host(now), DeliveryRef::Frame(&v));
        s.handle_delivery(host(now), DeliveryRef::Frame(&a));
        for _ in 0..33 {
            pump(&mut client, &mut session, now);
            now += Duration::from_millis(1);
        }
    }
    for _ in 0..200 {
        pump(&mut client, &mut session, now);
        now += Duration::from_millis(1);
    }
    // The player's peer asks for a key frame twice in 100 ms: the stream
    // is asked once.
    for _ in 0..2 {
        client
            .rtc
            .writer(video_mid)
            .expect("a writer")
            .request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
            .expect("a PLI");
        for _ in 0..50 {
            pump(&mut client, &mut session, now);
            now += Duration::from_millis(1);
        }
    }
    PlayRun {
        got: client.got.clone(),
        notices,
        asked,
        key_wanted,
    }
}
