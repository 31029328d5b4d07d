//! Just enough STUN (RFC 8489) to route a datagram: whether it is a STUN
//! message, and the local ICE username fragment its `USERNAME` names
//! (`LOCAL:REMOTE`, RFC 8445 §7.2.2). str0m checks the message itself.

/// STUN's magic cookie (RFC 8489 §5).
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// The `USERNAME` attribute.
const USERNAME: u16 = 0x0006;

/// Whether `data` looks like a STUN message: the two top bits clear, the
/// magic cookie, a length that is a multiple of 4 and fits.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] < 2
        && data[4..8] == MAGIC
        && usize::from(u16::from_be_bytes([data[2], data[3]])) + 20 <= data.len()
        && data[3] % 4 == 0
}

/// The local username fragment of a STUN message's `USERNAME`, if it has
/// one.
pub fn local_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let mut at = 20;
    let end = 20 + len;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([data[at], data[at + 1]]);
        let n = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let value = data.get(at + 4..at + 4 + n)?;
        if kind == USERNAME {
            let name = core::str::from_utf8(value).ok()?;
            let local = name.split(':').next()?;
            return (!local.is_empty()).then_some(local);
        }
        // Attributes are padded to 4 bytes.
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(username: &[u8]) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn the_local_fragment_is_read_from_a_binding_request() {
        assert_eq!(local_ufrag(&binding(b"ours:theirs")), Some("ours"));
        assert_eq!(local_ufrag(&binding(b"abc")), Some("abc"));
        assert_eq!(local_ufrag(&binding(b":x")), None);
        // DTLS (content type 22) and RTP (version 2) are not STUN.
        assert!(!is_stun(&[
            22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!is_stun(&[0x80; 40]));
        // A length past the end, an attribute past the end.
        let mut m = binding(b"ours:theirs");
        m[3] = 200;
        assert_eq!(local_ufrag(&m), None);
        let mut m = binding(b"ours:theirs");
        m[23] = 100;
        assert_eq!(local_ufrag(&m), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_without_a_panic(data: Vec<u8>) {
            let _ = local_ufrag(&data);
        }
    }
}
