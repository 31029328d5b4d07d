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
