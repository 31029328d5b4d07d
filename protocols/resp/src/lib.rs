//! arcly-resp: RESP, the protocol of Redis, without IO, and the stream
//! directory the gateways keep on a Redis server.
//!
//! * [`command`] writes a command (an array of bulk strings);
//!   [`Replies`] reads replies from the bytes a connection receives, in
//!   order, within [`Limits`] (a reply too large, too deep or malformed
//!   is an error, never a panic or an unbounded buffer).
//! * [`directory::Directory`] is an origin's and an edge's side of the
//!   directory: which keys this gateway publishes (`SET` with a TTL,
//!   refreshed before it runs out, so a crashed origin's keys expire;
//!   `DEL` when a stream ends), and where a key is published (`GET`).
//!
//! RESP2 only (what a server speaks until `HELLO 3`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod directory;

/// Bounds on what one reply may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one bulk string.
    pub max_bulk: usize,
    /// Elements of one array.
    pub max_elements: usize,
    /// Arrays within arrays.
    pub max_depth: usize,
    /// Bytes of a simple string, an error or a number line.
    pub max_line: usize,
    /// Bytes received and not yet parsed.
    pub max_buffered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 64 << 10,
            max_elements: 1024,
            max_depth: 4,
            max_line: 1024,
            max_buffered: 256 << 10,
        }
    }
}

/// A reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the command failed.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$n` then n bytes; `None` for the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` then n replies; `None` for the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

/// Bytes that are not a reply, or one past a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// Not RESP.
    #[error("not a RESP reply: {0}")]
    Malformed(&'static str),
    /// Past one of the [`Limits`].
    #[error("a reply past the limit on {0}")]
    TooLarge(&'static str),
}

/// The bytes of a command: an array of bulk strings (`SET`, key, value).
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply from the front of `buf`: the reply and the bytes it took, or
/// `None` until `buf` holds all of it.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Reply, usize)>, RespError> {
    parse_at(buf, 0, limits)
}

fn parse_at(
    buf: &[u8],
    depth: usize,
    limits: &Limits,
) -> Result<Option<(Reply, usize)>, RespError> {
    match step(buf, depth, limits)? {
        None => Ok(None),
        Some(Step::Whole(r, used)) => Ok(Some((r, used))),
        Some(Step::Array(n, mut used)) => {
            let mut items = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                match parse_at(&buf[used..], depth + 1, limits)? {
                    Some((r, k)) => {
                        items.push(r);
                        used += k;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), used)))
        }
    }
}

/// What the front of a buffer holds: a whole reply that is no array of
/// elements (or an empty or null one), or the head of an array of `n`
/// elements still to read; with the bytes it took.
enum Step {
    Whole(Reply, usize),
    Array(usize, usize),
}

/// The next reply, or array head, at the front of `buf`, `depth` arrays
/// deep; `None` until `buf` holds all of it.
fn step(buf: &[u8], depth: usize, limits: &Limits) -> Result<Option<Step>, RespError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((line, mut used)) = line(&buf[1..], limits)? else {
        return Ok(None);
    };
    used += 1;
    let text = || {
        std::str::from_utf8(line)
            .map(str::to_string)
            .map_err(|_| RespError::Malformed("a line that is not UTF-8"))
    };
    let number = || -> Result<i64, RespError> {
        let s = std::str::from_utf8(line).map_err(|_| RespError::Malformed("a bad number"))?;
        // Digits with an optional minus only: no plus, no spaces.
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RespError::Malformed("a bad number"));
        }
        s.parse().map_err(|_| RespError::Malformed("a bad number"))
    };
    let reply = match kind {
        b'+' => Reply::Simple(text()?),
        b'-' => Reply::Error(text()?),
        b':' => Reply::Integer(number()?),
        b'$' => match number()? {
            -1 => Reply::Bulk(None),
            n if n < 0 => return Err(RespError::Malformed("a negative length")),
            n => {
                let n = usize::try_from(n).map_err(|_| RespError::TooLarge("bulk strings"))?;
                if n > limits.max_bulk {
                    return Err(RespError::TooLarge("bulk strings"));
                }
                let rest = &buf[used..];
                if rest.len() < n + 2 {
                    return Ok(None);
                }
                if &rest[n..n + 2] != b"\r\n" {
                    return Err(RespError::Malformed("a bulk string without its CRLF"));
                }
                used += n + 2;
                Reply::Bulk(Some(rest[..n].to_vec()))
            }
        },
        b'*' => match number()? {
            -1 => Reply::Array(None),
            n if n < 0 => return Err(RespError::Malformed("a negative length")),
            n => {
                let n = usize::try_from(n).map_err(|_| RespError::TooLarge("arrays"))?;
                if n > limits.max_elements {
                    return Err(RespError::TooLarge("arrays"));
                }
                if depth >= limits.max_depth {
                    return Err(RespError::TooLarge("nesting"));
                }
                if n == 0 {
                    Reply::Array(Some(Vec::new()))
                } else {
                    return Ok(Some(Step::Array(n, used)));
                }
            }
        },
        _ => return Err(RespError::Malformed("an unknown type byte")),
    };
    Ok(Some(Step::Whole(reply, used)))
}

/// The line at the front of `buf` (without its CRLF) and the bytes it
/// took with the CRLF.
fn line<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(&'a [u8], usize)>, RespError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > limits.max_line => Err(RespError::TooLarge("lines")),
        Some(i) => Ok(Some((&buf[..i], i + 2))),
        None if buf.len() > limits.max_line + 1 => Err(RespError::TooLarge("lines")),
        None => Ok(None),
    }
}

/// The replies of one connection, in order, from the bytes it receives.
///
/// Read as they come: the elements of an array already whole are kept
/// while the rest arrives, so a large reply delivered in small pieces is
/// read once, not again at each piece.
#[derive(Debug, Default)]
pub struct Replies {
    /// Bytes received and not yet read.
    buf: Vec<u8>,
    /// The arrays of the reply being read, outermost first: elements still
    /// to read, and those read.
    open: Vec<(usize, Vec<Reply>)>,
    /// Bytes of the reply being read already taken from `buf`.
    taken: usize,
    limits: Limits,
}

impl Replies {
    /// Replies within `limits`.
    pub fn new(limits: Limits) -> Self {
        Replies {
            limits,
            ..Replies::default()
        }
    }

    /// Bytes received. An error when the reply being read would hold more
    /// than [`Limits::max_buffered`] (the connection should be dropped).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        if self.taken + self.buf.len() + bytes.len() > self.limits.max_buffered {
            return Err(RespError::TooLarge("bytes held"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next whole reply, if one is in.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, RespError> {
        let mut at = 0;
        let done = loop {
            let Some(s) = step(&self.buf[at..], self.open.len(), &self.limits)? else {
                break None;
            };
            let mut item = match s {
                Step::Whole(r, used) => {
                    at += used;
                    r
                }
                Step::Array(n, used) => {
                    at += used;
                    self.open.push((n, Vec::with_capacity(n.min(64))));
                    continue;
                }
            };
            // The item completes the arrays it ends, innermost first.
            let whole = loop {
                let Some((left, items)) = self.open.last_mut() else {
                    break Some(item);
                };
                items.push(item);
                *left -= 1;
                if *left > 0 {
                    break None;
                }
                let Some((_, items)) = self.open.pop() else {
                    break None;
                };
                item = Reply::Array(Some(items));
            };
            if whole.is_some() {
                break whole;
            }
        };
        self.buf.drain(..at);
        self.taken = match done {
            Some(_) => 0,
            None => self.taken + at,
        };
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"SET", b"k", b"v", b"EX", b"15"]),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$2\r\n15\r\n"
        );
    }

    #[test]
    fn every_reply_type_reads() {
        let l = Limits::default();
        let one = |b: &[u8]| parse(b, &l).unwrap().unwrap();
        assert_eq!(one(b"+OK\r\n"), (Reply::Simple("OK".into()), 5));
        assert_eq!(one(b"-ERR no\r\n").0, Reply::Error("ERR no".into()));
        assert_eq!(one(b":-12\r\n").0, Reply::Integer(-12));
        assert_eq!(one(b"$-1\r\n").0, Reply::Bulk(None));
        assert_eq!(
            one(b"$3\r\na\r\n\r\n").0,
            Reply::Bulk(Some(b"a\r\n".to_vec()))
        );
        assert_eq!(one(b"*-1\r\n").0, Reply::Array(None));
        assert_eq!(
            one(b"*2\r\n$1\r\nx\r\n:1\r\n").0,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"x".to_vec())),
                Reply::Integer(1)
            ]))
        );
        // Partial: none yet.
        for cut in [&b""[..], b"+O", b"$3\r\nab", b"*2\r\n:1\r\n"] {
            assert_eq!(parse(cut, &l), Ok(None), "{cut:?}");
        }
    }

    #[test]
    fn bad_and_oversized_replies_are_errors() {
        let l = Limits {
            max_bulk: 8,
            max_elements: 4,
            max_depth: 2,
            max_line: 16,
            max_buffered: 64,
        };
        for (bad, what) in [
            (&b"?x\r\n"[..], "type"),
            (b":1x\r\n", "number"),
            (b":+1\r\n", "number"),
            (b"$-2\r\n", "negative"),
            (b"$2\r\nabcd", "CRLF"),
            (b"$9\r\n", "bulk"),
            (b"*5\r\n", "array"),
            (b"*1\r\n*1\r\n*1\r\n:1\r\n", "depth"),
            (b"+0123456789abcdefXYZ", "line"),
        ] {
            assert!(parse(bad, &l).is_err(), "{what}: {bad:?}");
        }
        let mut r = Replies::new(l);
        assert!(r.push(&[b'+'; 65]).is_err(), "held bytes are bounded");
    }

    #[test]
    fn replies_come_in_order_across_reads() {
        let mut r = Replies::default();
        let wire = b"+OK\r\n$5\r\nhello\r\n:3\r\n";
        for b in wire.chunks(3) {
            r.push(b).unwrap();
        }
        assert_eq!(r.next_reply().unwrap(), Some(Reply::Simple("OK".into())));
        assert_eq!(
            r.next_reply().unwrap(),
            Some(Reply::Bulk(Some(b"hello".to_vec())))
        );
        assert_eq!(r.next_reply().unwrap(), Some(Reply::Integer(3)));
        assert_eq!(r.next_reply().unwrap(), None);
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,20}".prop_map(Reply::Simple),
            "[a-zA-Z0-9 ]{0,20}".prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Integer),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(Reply::Bulk),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            proptest::option::of(proptest::collection::vec(inner, 0..6)).prop_map(Reply::Array)
        })
    }

    fn write(r: &Reply, out: &mut Vec<u8>) {
        match r {
            Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(v)) => {
                out.extend_from_slice(format!("*{}\r\n", v.len()).as_bytes());
                for x in v {
                    write(x, out);
                }
            }
        }
    }

    proptest! {
        /// Any reply, written and cut anywhere, reads back whole and once.
        #[test]
        fn replies_round_trip_at_any_cut(rs in proptest::collection::vec(reply(), 1..5), cut in 1usize..64) {
            let mut wire = Vec::new();
            for r in &rs {
                write(r, &mut wire);
            }
            let mut got = Vec::new();
            let mut p = Replies::new(Limits { max_buffered: 1 << 20, ..Limits::default() });
            for chunk in wire.chunks(cut) {
                p.push(chunk).unwrap();
                while let Some(r) = p.next_reply().unwrap() {
                    got.push(r);
                }
            }
            prop_assert_eq!(got, rs);
        }

        /// The reader of a connection, fed in pieces, reads what the
        /// one-shot parser reads from the whole.
        #[test]
        fn pieces_read_as_the_whole(b in proptest::collection::vec(any::<u8>(), 0..256), cut in 1usize..16) {
            let limits = Limits { max_depth: 3, max_elements: 8, ..Limits::default() };
            let whole = parse(&b, &limits).map(|r| r.map(|(x, _)| x));
            let mut r = Replies::new(limits);
            let mut got = Ok(None);
            for chunk in b.chunks(cut) {
                r.push(chunk).unwrap();
                got = r.next_reply();
                if !matches!(got, Ok(None)) {
                    break;
                }
            }
            prop_assert_eq!(got, whole);
        }

        /// Arbitrary bytes never panic, and a reply never takes more than
        /// it was given.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, n))) = parse(&b, &Limits::default()) {
                prop_assert!(n <= b.len());
            }
        }
    }
}
