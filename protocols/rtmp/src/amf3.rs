//! AMF3 (Adobe "Action Message Format -- AMF 3", 2013), decoded far enough
//! for the commands of type 17 that Flash-era clients send with
//! `objectEncoding = 3`: every value type reads, and values are mapped onto
//! [`Amf0Value`] so that command handling has one value model.
//!
//! Strings, objects and traits may be sent by reference; the reference
//! tables are bounded by the input (each entry costs at least one byte).
//! References to complex objects decode as [`Amf0Value::Reference`].

use crate::amf0::Amf0Value;
use crate::error::{Result, RtmpError};

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const INTEGER: u8 = 0x04;
const DOUBLE: u8 = 0x05;
const STRING: u8 = 0x06;
const XML_DOC: u8 = 0x07;
const DATE: u8 = 0x08;
const ARRAY: u8 = 0x09;
const OBJECT: u8 = 0x0A;
const XML: u8 = 0x0B;
const BYTE_ARRAY: u8 = 0x0C;

#[derive(Clone, Debug)]
struct Traits {
    class: String,
    dynamic: bool,
    sealed: Vec<String>,
}

/// Reads AMF3 values.
#[derive(Debug)]
pub struct Amf3Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
    strings: Vec<String>,
    traits: Vec<Traits>,
    objects: u16,
}

impl<'a> Amf3Reader<'a> {
    /// A reader over `buf`, nesting at most `max_depth`.
    pub fn new(buf: &'a [u8], max_depth: usize) -> Self {
        Amf3Reader {
            buf,
            pos: 0,
            max_depth,
            strings: Vec::new(),
            traits: Vec::new(),
            objects: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
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

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    /// A variable-length 29-bit unsigned integer.
    fn u29(&mut self) -> Result<u32> {
        let mut v: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            if i == 3 {
                return Ok((v << 8) | u32::from(b));
            }
            v = (v << 7) | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                break;
            }
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = (h >> 1) as usize;
            return self
                .strings
                .get(idx)
                .cloned()
                .ok_or_else(|| self.err("string reference out of range"));
        }
        let len = (h >> 1) as usize;
        let b = self.take(len)?;
        let s = String::from_utf8_lossy(b).into_owned();
        if !s.is_empty() {
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    fn next_object(&mut self) {
        self.objects = self.objects.saturating_add(1);
    }

    /// Reads one value at nesting `depth`.
    pub(crate) fn read_at(&mut self, depth: usize) -> Result<Amf0Value> {
        if depth > self.max_depth {
            return Err(RtmpError::AmfTooDeep(self.max_depth));
        }
        let marker = self.u8()?;
        Ok(match marker {
            UNDEFINED => Amf0Value::Undefined,
            NULL => Amf0Value::Null,
            FALSE => Amf0Value::Boolean(false),
            TRUE => Amf0Value::Boolean(true),
            INTEGER => {
                let v = self.u29()?;
                // Sign-extend the 29-bit integer.
                let v = ((v << 3) as i32) >> 3;
                Amf0Value::Number(f64::from(v))
            }
            DOUBLE => Amf0Value::Number(self.f64()?),
            STRING => Amf0Value::String(self.string()?),
            XML_DOC | XML | BYTE_ARRAY => {
                let h = self.u29()?;
                if h & 1 == 0 {
                    Amf0Value::Reference((h >> 1) as u16)
                } else {
                    let b = self.take((h >> 1) as usize)?;
                    self.next_object();
                    Amf0Value::XmlDocument(String::from_utf8_lossy(b).into_owned())
                }
            }
            DATE => {
                let h = self.u29()?;
                if h & 1 == 0 {
                    Amf0Value::Reference((h >> 1) as u16)
                } else {
                    self.next_object();
                    Amf0Value::Date {
                        millis: self.f64()?,
                        tz: 0,
                    }
                }
            }
            ARRAY => {
                let h = self.u29()?;
                if h & 1 == 0 {
                    return Ok(Amf0Value::Reference((h >> 1) as u16));
                }
                self.next_object();
                let dense = h >> 1;
                let mut assoc = Vec::new();
                loop {
                    let k = self.string()?;
                    if k.is_empty() {
                        break;
                    }
                    let v = self.read_at(depth + 1)?;
                    assoc.push((k, v));
                }
                let mut items = Vec::new();
                for _ in 0..dense {
                    items.push(self.read_at(depth + 1)?);
                }
                if assoc.is_empty() {
                    Amf0Value::StrictArray(items)
                } else {
                    for (i, v) in items.into_iter().enumerate() {
                        assoc.push((i.to_string(), v));
                    }
                    Amf0Value::EcmaArray(assoc)
                }
            }
            OBJECT => self.object(depth)?,
            _ => return Err(self.err("unknown AMF3 type marker")),
        })
    }

    fn object(&mut self, depth: usize) -> Result<Amf0Value> {
        let h = self.u29()?;
        if h & 1 == 0 {
            return Ok(Amf0Value::Reference((h >> 1) as u16));
        }
        self.next_object();
        let traits = if h & 2 == 0 {
            let idx = (h >> 2) as usize;
            self.traits
                .get(idx)
                .cloned()
                .ok_or_else(|| self.err("traits reference out of range"))?
        } else if h & 4 != 0 {
            return Err(self.err("externalizable objects are not supported"));
        } else {
            let dynamic = h & 8 != 0;
            let count = h >> 4;
            let class = self.string()?;
            let mut sealed = Vec::new();
            for _ in 0..count {
                sealed.push(self.string()?);
            }
            let t = Traits {
                class,
                dynamic,
                sealed,
            };
            self.traits.push(t.clone());
            t
        };
        let mut props = Vec::new();
        for name in &traits.sealed {
            let v = self.read_at(depth + 1)?;
            props.push((name.clone(), v));
        }
        if traits.dynamic {
            loop {
                let k = self.string()?;
                if k.is_empty() {
                    break;
                }
                let v = self.read_at(depth + 1)?;
                props.push((k, v));
            }
        }
        Ok(if traits.class.is_empty() {
            Amf0Value::Object(props)
        } else {
            Amf0Value::TypedObject {
                class: traits.class,
                properties: props,
            }
        })
    }
}

/// Decodes the body of an AMF3 command or data message (types 17 and 15): a
/// format byte (0), then AMF0 values, any of which may switch to AMF3.
pub fn decode_command(buf: &[u8], max_depth: usize) -> Result<Vec<Amf0Value>> {
    let body = match buf.first() {
        Some(0) => &buf[1..],
        // Some encoders omit the format byte.
        _ => buf,
    };
    crate::amf0::decode_all(body, max_depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_amf3_connect_object() {
        // AMF0 "connect", 1, then switch to AMF3 for a dynamic anonymous
        // object {app: "live", n: 5}.
        let mut b = vec![0x00, 0x02, 0, 7];
        b.extend_from_slice(b"connect");
        b.push(0x00);
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(&[0x11, OBJECT, 0x0B, 0x01]); // dynamic, no sealed, class ""
        b.extend_from_slice(&[0x07]);
        b.extend_from_slice(b"app");
        b.extend_from_slice(&[STRING, 0x09]);
        b.extend_from_slice(b"live");
        b.extend_from_slice(&[0x03, b'n', INTEGER, 5, 0x01]);
        let v = decode_command(&b, 8).unwrap();
        assert_eq!(v[0], Amf0Value::String("connect".into()));
        assert_eq!(v[2].get("app"), Some(&Amf0Value::String("live".into())));
        assert_eq!(v[2].get("n"), Some(&Amf0Value::Number(5.0)));
    }

    #[test]
    fn negative_integers_and_bombs() {
        let mut r = Amf3Reader::new(&[INTEGER, 0xFF, 0xFF, 0xFF, 0xFF], 4);
        assert_eq!(r.read_at(0).unwrap(), Amf0Value::Number(-1.0));
        let mut bomb = Vec::new();
        for _ in 0..10_000 {
            bomb.extend_from_slice(&[ARRAY, 0x03, 0x01]);
        }
        let mut r = Amf3Reader::new(&bomb, 16);
        assert_eq!(r.read_at(0), Err(RtmpError::AmfTooDeep(16)));
    }
}
