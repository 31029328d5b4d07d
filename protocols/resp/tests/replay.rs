//! Real peers' bytes, both directions, from `testdata/` (see its README):
//! redis-cli's commands are byte for byte what `command` writes, Debian's
//! redis-server's replies read back whole however TCP cut them, and the
//! gateway's directory exchange with redis-server replays exactly.

use arcly_core::time::Instant;
use arcly_resp::directory::{Directory, DirectoryConfig, DirectoryEvent};
use arcly_resp::{command, parse, Limits, Replies, Reply, RespError};
use std::time::Duration;

/// The chunks of a capture: (client to server, bytes), in order.
fn capture(name: &str) -> Vec<(bool, Vec<u8>)> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "{path}: {l:.60}");
            let hex = f[2];
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            (f[0] == "c2s", bytes)
        })
        .collect()
}

/// One direction's bytes, joined.
fn joined(chunks: &[(bool, Vec<u8>)], c2s: bool) -> Vec<u8> {
    chunks
        .iter()
        .filter(|c| c.0 == c2s)
        .flat_map(|c| c.1.clone())
        .collect()
}

/// Limits wide enough for redis-cli's first question (COMMAND DOCS).
fn wide() -> Limits {
    Limits {
        max_depth: 16,
        max_buffered: 1 << 20,
        max_line: 4096,
        ..Limits::default()
    }
}

/// Every reply in `bytes`, fed `cut` bytes at a time.
fn replies(bytes: &[u8], cut: usize, limits: Limits) -> Vec<Reply> {
    let mut r = Replies::new(limits);
    let mut out = Vec::new();
    for chunk in bytes.chunks(cut) {
        r.push(chunk).expect("within the bytes held");
        while let Some(x) = r.next_reply().expect("a reply") {
            out.push(x);
        }
    }
    out
}

fn bulk(b: &[u8]) -> Reply {
    Reply::Bulk(Some(b.to_vec()))
}

#[test]
fn redis_clis_commands_are_ours_byte_for_byte() {
    let c = capture("redis_cli.txt");
    let sent = joined(&c, true);
    let (mut at, mut n) = (0, 0);
    while at < sent.len() {
        let (cmd, used) = parse(&sent[at..], &wide())
            .expect("a command")
            .expect("a whole command");
        let Reply::Array(Some(args)) = cmd else {
            panic!("not an array: {cmd:?}")
        };
        let args: Vec<Vec<u8>> = args
            .into_iter()
            .map(|a| match a {
                Reply::Bulk(Some(b)) => b,
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        assert_eq!(command(&refs), &sent[at..at + used], "command {n}");
        at += used;
        n += 1;
    }
    // COMMAND DOCS, then the 17 of the capture script.
    assert_eq!(n, 18);
}

#[test]
fn redis_servers_replies_read_whole_at_any_cut() {
    let c = capture("redis_cli.txt");
    let got = joined(&c, false);
    let all = replies(&got, got.len(), wide());
    for cut in [1, 2, 3, 7, 64, 1500] {
        assert_eq!(replies(&got, cut, wide()), all, "cut every {cut} bytes");
    }
    assert_eq!(all.len(), 18, "a reply for each command");
    let Reply::Array(Some(docs)) = &all[0] else {
        panic!("COMMAND DOCS: {:?}", all[0])
    };
    assert!(docs.len() > 300, "{} entries", docs.len());
    let expected = [
        Reply::Simple("PONG".into()),
        Reply::Simple("OK".into()),
        bulk(b"rtmp://10.0.0.1:1935"),
        Reply::Bulk(None),
        Reply::Simple("OK".into()),
        bulk(b""),
        Reply::Integer(1),
        Reply::Integer(3),
        Reply::Array(Some(vec![bulk(b"a"), bulk(b"b"), bulk(b"c")])),
        Reply::Array(Some(vec![])),
        Reply::Array(Some(vec![
            Reply::Integer(1),
            Reply::Array(Some(vec![bulk(b"x"), bulk(b"y")])),
            bulk(b"rtmp://10.0.0.1:1935"),
        ])),
        Reply::Bulk(None),
        Reply::Array(Some(vec![])),
        Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into()),
        Reply::Simple("OK".into()),
        bulk(b"a\r\nb"),
        Reply::Array(None),
    ];
    assert_eq!(all[1..], expected);

    // Within the default limits, COMMAND DOCS is refused as too deep: an
    // error, not a panic, and nothing past the bound held.
    let mut r = Replies::default();
    r.push(&got[..got.len().min(200 << 10)]).expect("held");
    assert!(matches!(r.next_reply(), Err(RespError::TooLarge(_))));

    let big = joined(&capture("redis_cli_big.txt"), false);
    let mut want = vec![b'x'; 10240];
    want.push(b'\n');
    assert_eq!(replies(&big, 100, Limits::default()), [bulk(&want)]);
}

/// The gateway as an origin and as an edge, against redis-server: the
/// directory, driven as the gateway drove it, writes exactly the bytes
/// captured and reads the server's answers as it did.
#[test]
fn the_gateways_directory_exchange_replays() {
    let origin = capture("gateway_origin.txt");
    let mut d = Directory::new("rtmp://127.0.0.1:40910", DirectoryConfig::default());
    let t0 = Instant::from_millis(1000);
    let step = |d: &mut Directory, i: usize| {
        assert_eq!(
            d.poll_transmit().as_deref(),
            Some(&origin[2 * i].1[..]),
            "command {i}"
        );
        assert!(origin[2 * i].0 && !origin[2 * i + 1].0);
        for r in replies(&origin[2 * i + 1].1, 1, Limits::default()) {
            assert_eq!(d.handle_reply(r), None);
        }
        assert_eq!(d.poll_error(), None, "redis-server took it");
    };
    d.published("live/cam", t0);
    step(&mut d, 0);
    d.handle_timeout(t0 + Duration::from_secs(5));
    step(&mut d, 1);
    d.unpublished("live/cam");
    step(&mut d, 2);
    assert_eq!(d.poll_transmit(), None);
    assert_eq!(d.in_flight(), 0);

    let edge = capture("gateway_edge.txt");
    let mut d = Directory::new("rtmp://127.0.0.1:40912", DirectoryConfig::default());
    for (i, (key, origin)) in [
        ("live/cam", Some("rtmp://127.0.0.1:40911")),
        ("live/none", None),
    ]
    .into_iter()
    .enumerate()
    {
        let id = d.lookup(key);
        assert_eq!(d.poll_transmit().as_deref(), Some(&edge[2 * i].1[..]));
        let r = replies(&edge[2 * i + 1].1, 2, Limits::default());
        assert_eq!(
            r.into_iter()
                .filter_map(|r| d.handle_reply(r))
                .collect::<Vec<_>>(),
            [DirectoryEvent::Found {
                id,
                key: key.into(),
                origin: origin.map(String::from)
            }]
        );
    }
}
