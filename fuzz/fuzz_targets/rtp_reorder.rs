//! Arbitrary arrivals into the RTP reorder buffer (any sequence numbers,
//! duplicates, jumps, restarts, time going on or not): no panic, never
//! more than its capacity held once popped, every packet pushed is
//! released, dropped or still held, the deadline it asks for is honoured,
//! and what it releases repeats the last sequence number only after a
//! restart, marked as following a gap.
//!
//! Input: capacity and delay bytes, then `[op][seq u16 LE][dt]` records:
//! op bit 0 pops, bit 1 takes `seq` as is (else as a step from the last).

#![no_main]

use arcly_rtsp::rtp::{ReorderBuffer, RtpHeader, RtpPacket};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[cap, delay], mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let capacity = usize::from(cap % 64) + 1;
    let mut r = ReorderBuffer::new(capacity, u64::from(delay) * 100);
    let (mut now, mut seq) = (0u64, 0u16);
    let (mut pushed, mut released) = (0u64, 0u64);
    let mut last: Option<u16> = None;
    while rest.len() >= 4 {
        let (op, s, dt) = (rest[0], u16::from_le_bytes([rest[1], rest[2]]), rest[3]);
        rest = &rest[4..];
        now += u64::from(dt) * 10;
        seq = if op & 2 != 0 {
            s
        } else {
            seq.wrapping_add(s % 16)
        };
        r.push(
            now,
            RtpPacket {
                header: RtpHeader {
                    marker: false,
                    payload_type: 96,
                    sequence: seq,
                    timestamp: u32::from(seq),
                    ssrc: 1,
                },
                payload: Bytes::new(),
            },
        );
        pushed += 1;
        assert!(r.len() <= capacity);
        if op & 1 != 0 {
            while let Some((p, lost)) = r.pop(now) {
                assert!(lost || Some(p.header.sequence) != last);
                last = Some(p.header.sequence);
                released += 1;
            }
            assert!(r.len() < capacity);
            match r.next_deadline() {
                None => assert!(r.is_empty()),
                Some(t) => assert!(t > now, "a packet was due and not released"),
            }
        }
        assert_eq!(pushed, released + r.dropped() + r.len() as u64);
    }
    if let Some(t) = r.next_deadline() {
        let n = r.len();
        let mut got = 0;
        while r.pop(t.max(now)).is_some() {
            got += 1;
            released += 1;
        }
        assert!(got > 0 || n == 0);
    }
    released += r.flush().len() as u64;
    assert_eq!(pushed, released + r.dropped());
});
