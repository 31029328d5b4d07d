//! AMF0, the Action Message Format of RTMP commands and metadata
//! (Adobe "Action Message Format -- AMF 0", December 2007).
//!
//! Every type marker of the specification decodes: number, boolean, string,
//! object, null, undefined, reference, ECMA array, object end, strict array,
//! date, long string, unsupported, XML document, typed object, and the switch
//! to AMF3 (whose values are mapped onto [`Amf0Value`]). Movieclip and
//! recordset are reserved and rejected. Nesting is bounded by a depth limit,
//! and every length is checked against the bytes that remain before anything
//! is allocated.

use crate::error::{Result, RtmpError};
use bytes::BufMut;

/// The default nesting limit for objects and arrays.
pub const DEFAULT_MAX_DEPTH: usize = 16;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// One AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    /// An IEEE-754 double.
    Number(f64),
    /// `true` or `false`.
    Boolean(bool),
    /// A UTF-8 string (short or long on the wire).
    String(String),
    /// An anonymous object: ordered key/value pairs.
    Object(Vec<(String, Amf0Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// A reference to an earlier complex value, by index.
    Reference(u16),
    /// An associative array (`onMetaData` uses it).
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array.
    StrictArray(Vec<Amf0Value>),
    /// A date: milliseconds since the Unix epoch, and a time zone (unused,
    /// kept for round trips).
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Time-zone offset in minutes (should be 0).
        tz: i16,
    },
    /// The unsupported marker.
    Unsupported,
    /// An XML document, as text.
    XmlDocument(String),
    /// An object with a class name.
    TypedObject {
        /// The class name.
        class: String,
        /// The properties.
        properties: Vec<(String, Amf0Value)>,
    },
}

impl Amf0Value {
    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::XmlDocument(s) => Some(s),
            _ => None,
        }
    }

    /// The properties, if this is an object, an ECMA array or a typed object.
    pub fn as_properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The property `key` of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.as_properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The value as text, for metadata events: numbers without a needless
    /// fraction, booleans as `true`/`false`, nested values in a short form.
    pub fn to_text(&self) -> String {
        match self {
            Amf0Value::Number(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    format!("{}", *n as i64)
                } else {
                    format!("{n}")
                }
            }
            Amf0Value::Boolean(b) => format!("{b}"),
            Amf0Value::String(s) | Amf0Value::XmlDocument(s) => s.clone(),
            Amf0Value::Null => "null".into(),
            Amf0Value::Undefined | Amf0Value::Unsupported => "undefined".into(),
            Amf0Value::Reference(r) => format!("ref {r}"),
            Amf0Value::Date { millis, .. } => format!("{millis}"),
            Amf0Value::StrictArray(v) => {
                let items: Vec<String> = v.iter().map(Amf0Value::to_text).collect();
                format!("[{}]", items.join(","))
            }
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => {
                let items: Vec<String> = p
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.to_text()))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }
}

/// Reads AMF0 values from a byte slice.
#[derive(Debug)]
pub struct Amf0Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl<'a> Amf0Reader<'a> {
    /// A reader over `buf` that allows nesting up to `max_depth`.
    pub fn new(buf: &'a [u8], max_depth: usize) -> Self {
        Amf0Reader {
            buf,
            pos: 0,
            max_depth,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, what: &'static str) -> RtmpError {
        RtmpError::Amf {
            offset: self.pos,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn utf8(&mut self, len: usize) -> Result<String> {
        // `take` checks `len` against what remains before anything is allocated.
        let b = self.take(len)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn short_string(&mut self) -> Result<String> {
        let n = usize::from(self.u16()?);
        self.utf8(n)
    }

    fn long_string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        self.utf8(n)
    }

    /// Reads the next value.
    pub fn read(&mut self) -> Result<Amf0Value> {
        self.read_at(0)
    }

    /// Reads every remaining value.
    pub fn read_all(&mut self) -> Result<Vec<Amf0Value>> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(self.read()?);
        }
        Ok(out)
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() {
                // An empty key precedes the object-end marker; some encoders
                // end ECMA arrays early, so a missing marker at the end of
                // input is accepted too.
                if self.is_empty() {
                    return Ok(props);
                }
                let m = self.u8()?;
                if m == OBJECT_END {
                    return Ok(props);
                }
                return Err(self.err("empty property name without object end"));
            }
            let v = self.read_at(depth + 1)?;
            props.push((key, v));
        }
    }

    fn read_at(&mut self, depth: usize) -> Result<Amf0Value> {
        if depth > self.max_depth {
            return Err(RtmpError::AmfTooDeep(self.max_depth));
        }
        let marker = self.u8()?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64()?),
            BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            STRING => Amf0Value::String(self.short_string()?),
            OBJECT => Amf0Value::Object(self.properties(depth)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            REFERENCE => Amf0Value::Reference(self.u16()?),
            ECMA_ARRAY => {
                // The count is advisory: properties run to the object end.
                let _count = self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            STRICT_ARRAY => {
                let count = self.u32()?;
                // No preallocation from the wire: each element takes at
                // least one byte, so the input bounds the vector.
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.read_at(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let millis = self.f64()?;
                let tz = self.u16()? as i16;
                Amf0Value::Date { millis, tz }
            }
            LONG_STRING => Amf0Value::String(self.long_string()?),
            UNSUPPORTED => Amf0Value::Unsupported,
            XML_DOCUMENT => Amf0Value::XmlDocument(self.long_string()?),
            TYPED_OBJECT => {
                let class = self.short_string()?;
                let properties = self.properties(depth)?;
                Amf0Value::TypedObject { class, properties }
            }
            AVMPLUS => {
                let mut r = crate::amf3::Amf3Reader::new(&self.buf[self.pos..], self.max_depth);
                let v = r.read_at(depth)?;
                self.pos += r.position();
                v
            }
            OBJECT_END => return Err(self.err("object end outside an object")),
            _ => return Err(self.err("unknown type marker")),
        })
    }
}

/// Decodes every value in `buf`.
pub fn decode_all(buf: &[u8], max_depth: usize) -> Result<Vec<Amf0Value>> {
    Amf0Reader::new(buf, max_depth).read_all()
}

fn put_key(out: &mut Vec<u8>, key: &str) {
    let b = key.as_bytes();
    // Property names are written by this crate or taken from decoded input;
    // longer than 65535 bytes they are cut, never wrapped.
    let n = b.len().min(usize::from(u16::MAX));
    out.put_u16(n as u16);
    out.extend_from_slice(&b[..n]);
}

fn put_props(out: &mut Vec<u8>, props: &[(String, Amf0Value)]) {
    // An empty name would read as the object's end: AMF0 cannot carry it
    // (AMF3 can, and its values are mapped here), so it is left out.
    for (k, v) in props.iter().filter(|(k, _)| !k.is_empty()) {
        put_key(out, k);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

/// Appends the encoding of `v` to `out`. Strings longer than 65535 bytes are
/// written as long strings.
pub fn encode(v: &Amf0Value, out: &mut Vec<u8>) {
    match v {
        Amf0Value::Number(n) => {
            out.push(NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.push(BOOLEAN);
            out.push(u8::from(*b));
        }
        Amf0Value::String(s) => {
            if s.len() <= usize::from(u16::MAX) {
                out.push(STRING);
                out.put_u16(s.len() as u16);
            } else {
                out.push(LONG_STRING);
                out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
            }
            out.extend_from_slice(s.as_bytes());
        }
        Amf0Value::Object(p) => {
            out.push(OBJECT);
            put_props(out, p);
        }
        Amf0Value::Null => out.push(NULL),
        Amf0Value::Undefined => out.push(UNDEFINED),
        Amf0Value::Reference(r) => {
            out.push(REFERENCE);
            out.put_u16(*r);
        }
        Amf0Value::EcmaArray(p) => {
            out.push(ECMA_ARRAY);
            out.put_u32(u32::try_from(p.len()).unwrap_or(u32::MAX));
            put_props(out, p);
        }
        Amf0Value::StrictArray(items) => {
            out.push(STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for i in items {
                encode(i, out);
            }
        }
        Amf0Value::Date { millis, tz } => {
            out.push(DATE);
            out.put_f64(*millis);
            out.put_i16(*tz);
        }
        Amf0Value::Unsupported => out.push(UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.push(XML_DOCUMENT);
            out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
            out.extend_from_slice(s.as_bytes());
        }
        Amf0Value::TypedObject { class, properties } => {
            out.push(TYPED_OBJECT);
            put_key(out, class);
            put_props(out, properties);
        }
    }
}

/// Encodes a sequence of values.
pub fn encode_all(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// An object from `(&str, value)` pairs.
pub fn object<const N: usize>(pairs: [(&str, Amf0Value); N]) -> Amf0Value {
    Amf0Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A string value.
pub fn string(s: &str) -> Amf0Value {
    Amf0Value::String(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_connect_command_object() {
        // "connect", 1.0, {app: "live"}
        let mut b = vec![STRING, 0, 7];
        b.extend_from_slice(b"connect");
        b.push(NUMBER);
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(&[OBJECT, 0, 3, b'a', b'p', b'p', STRING, 0, 4]);
        b.extend_from_slice(b"live");
        b.extend_from_slice(&[0, 0, OBJECT_END]);
        let v = decode_all(&b, 8).unwrap();
        assert_eq!(v[0], string("connect"));
        assert_eq!(v[1], Amf0Value::Number(1.0));
        assert_eq!(v[2].get("app"), Some(&string("live")));
    }

    #[test]
    fn nesting_bomb_is_an_error_not_a_stack_overflow() {
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert_eq!(decode_all(&b, 16), Err(RtmpError::AmfTooDeep(16)));
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend_from_slice(&[OBJECT, 0, 1, b'a']);
        }
        assert_eq!(decode_all(&b, 16), Err(RtmpError::AmfTooDeep(16)));
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let b = [LONG_STRING, 0xFF, 0xFF, 0xFF, 0xFF, b'x'];
        assert!(matches!(decode_all(&b, 16), Err(RtmpError::Amf { .. })));
        let b = [STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, NULL];
        assert!(decode_all(&b, 16).is_err());
    }

    #[test]
    fn amf3_values_with_empty_names_re_encode() {
        // Found by the fuzzer: an AMF3 typed object with an empty sealed
        // member name.
        let b = [
            0x11u8, 0x0a, 0x23, 0x0b, 0x01, 0x0b, 0x11, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
            0x05, 0x05, 0xf2, 0x05, 0x0a, 0x05, 0x11, 0x0a,
        ];
        let v = decode_all(&b, 16).unwrap();
        assert!(decode_all(&encode_all(&v), 16).is_ok());
    }

    #[test]
    fn rejects_reserved_markers() {
        assert!(decode_all(&[0x04], 4).is_err());
        assert!(decode_all(&[0x0E], 4).is_err());
        assert!(decode_all(&[OBJECT_END], 4).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN never compares equal", |f| !f.is_nan())
                .prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,20}".prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            Just(Amf0Value::Unsupported),
            any::<u16>().prop_map(Amf0Value::Reference),
            (-1e12f64..1e12, any::<i16>()).prop_map(|(millis, tz)| Amf0Value::Date { millis, tz }),
            ".{0,20}".prop_map(Amf0Value::XmlDocument),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let props = prop::collection::vec(("[a-z]{1,8}", inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.clone().prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
                ("[A-Za-z]{1,8}", props)
                    .prop_map(|(class, properties)| Amf0Value::TypedObject { class, properties }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(values in prop::collection::vec(arb_value(), 0..6)) {
            let bytes = encode_all(&values);
            prop_assert_eq!(decode_all(&bytes, 16).unwrap(), values);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&bytes, 16);
        }
    }
}
