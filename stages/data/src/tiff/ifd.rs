//! The TIFF header and image file directories (IFDs), classic and BigTIFF, either byte order.
//!
//! Entry values that do not fit inline are read lazily, only for the tags a caller asks for, so
//! a large unrelated tag (an ICC profile, XMP) costs nothing and a corrupt one cannot fail an
//! open. All offsets and counts are checked against the file size before reading.

use std::collections::HashSet;

use super::source::Source;
use super::tags::{FieldType, tag_name};

/// Byte order of a TIFF file ("II" little-endian, "MM" big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    LittleEndian,
    BigEndian,
}

impl ByteOrder {
    pub fn name(self) -> &'static str {
        match self {
            ByteOrder::LittleEndian => "little-endian",
            ByteOrder::BigEndian => "big-endian",
        }
    }

    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            ByteOrder::LittleEndian => u16::from_le_bytes(a),
            ByteOrder::BigEndian => u16::from_be_bytes(a),
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            ByteOrder::LittleEndian => u32::from_le_bytes(a),
            ByteOrder::BigEndian => u32::from_be_bytes(a),
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        match self {
            ByteOrder::LittleEndian => u64::from_le_bytes(a),
            ByteOrder::BigEndian => u64::from_be_bytes(a),
        }
    }
}

/// What the first bytes of the file say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub order: ByteOrder,
    pub bigtiff: bool,
    pub first_ifd: u64,
}

impl Header {
    pub(crate) fn read(src: &Source) -> Result<Header, String> {
        if src.len() < 8 {
            return Err(format!("file is {} bytes long, too short for a TIFF header", src.len()));
        }
        let mut b = [0u8; 16];
        let n = src.len().min(16) as usize;
        src.read_exact_at(0, &mut b[..n])?;
        let order = match &b[..2] {
            b"II" => ByteOrder::LittleEndian,
            b"MM" => ByteOrder::BigEndian,
            _ => return Err(format!("not a TIFF file (starts with {:02x} {:02x}, not II or MM)", b[0], b[1])),
        };
        match order.u16(&b[2..4]) {
            42 => Ok(Header { order, bigtiff: false, first_ifd: u64::from(order.u32(&b[4..8])) }),
            43 => {
                if n < 16 || order.u16(&b[4..6]) != 8 || order.u16(&b[6..8]) != 0 {
                    return Err("BigTIFF header is malformed (offset size is not 8)".into());
                }
                Ok(Header { order, bigtiff: true, first_ifd: order.u64(&b[8..16]) })
            }
            magic => Err(format!("not a TIFF file (version {magic}, expected 42 or BigTIFF 43)")),
        }
    }

    /// Bytes of the header: no IFD can start inside it.
    fn len(&self) -> u64 {
        if self.bigtiff { 16 } else { 8 }
    }
}

/// Where an entry's value bytes are: inline in the entry, or at an offset in the file.
#[derive(Debug, Clone)]
enum ValueBytes {
    Inline([u8; 8]),
    At(u64),
}

/// One IFD entry with its value not yet decoded.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub tag: u16,
    pub field_type: FieldType,
    pub count: u64,
    value: ValueBytes,
}

/// One image file directory.
#[derive(Debug, Clone)]
pub(crate) struct Ifd {
    /// File offset of the directory (identifies it in messages).
    pub offset: u64,
    pub order: ByteOrder,
    entries: Vec<Entry>,
    /// Offset of the next IFD in the chain, 0 at the end.
    pub next: u64,
}

/// Longest IFD chain followed (a loop or garbage beyond this is an error, not a hang).
const MAX_IFDS: usize = 4096;

impl Ifd {
    /// Reads the directory at `offset`.
    pub(crate) fn read(src: &Source, header: &Header, offset: u64) -> Result<Ifd, String> {
        let order = header.order;
        if offset < header.len() || offset >= src.len() {
            return Err(format!("IFD offset {offset} lies outside the file ({} bytes)", src.len()));
        }
        let (count_size, entry_size, inline_size) = if header.bigtiff { (8, 20, 8) } else { (2, 12, 4) };
        let mut count_bytes = [0u8; 8];
        src.read_exact_at(offset, &mut count_bytes[..count_size])
            .map_err(|e| format!("IFD at offset {offset}: {e}"))?;
        let count = if header.bigtiff { order.u64(&count_bytes) } else { u64::from(order.u16(&count_bytes)) };
        if count == 0 || count > 100_000 {
            return Err(format!("IFD at offset {offset} claims {count} entries"));
        }
        let next_size = if header.bigtiff { 8 } else { 4 };
        let table = src
            .read_vec(offset + count_size as u64, count * entry_size + next_size)
            .map_err(|e| format!("IFD at offset {offset} with {count} entries: {e}"))?;
        let mut entries = Vec::with_capacity(count as usize);
        for raw in table.chunks_exact(entry_size as usize).take(count as usize) {
            let tag = order.u16(&raw[0..2]);
            let Some(field_type) = FieldType::from_code(order.u16(&raw[2..4])) else {
                continue; // unknown field types are skipped, as TIFF 6.0 asks of readers
            };
            let n = if header.bigtiff { order.u64(&raw[4..12]) } else { u64::from(order.u32(&raw[4..8])) };
            let value_field = &raw[entry_size as usize - inline_size..];
            let size = n.checked_mul(field_type.size());
            let value = match size {
                Some(size) if size <= inline_size as u64 => {
                    let mut inline = [0u8; 8];
                    inline[..inline_size].copy_from_slice(value_field);
                    ValueBytes::Inline(inline)
                }
                _ => ValueBytes::At(if header.bigtiff {
                    order.u64(value_field)
                } else {
                    u64::from(order.u32(value_field))
                }),
            };
            entries.push(Entry { tag, field_type, count: n, value });
        }
        let next_field = &table[(count * entry_size) as usize..];
        let next = if header.bigtiff { order.u64(next_field) } else { u64::from(order.u32(next_field)) };
        Ok(Ifd { offset, order, entries, next })
    }

    /// Follows the main IFD chain from the header; loops and runaway chains are errors.
    pub(crate) fn read_chain(src: &Source, header: &Header) -> Result<Vec<Ifd>, String> {
        let mut ifds = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = header.first_ifd;
        while offset != 0 {
            if !seen.insert(offset) {
                return Err(format!("IFD chain loops back to offset {offset}"));
            }
            if ifds.len() >= MAX_IFDS {
                return Err(format!("more than {MAX_IFDS} IFDs; corrupt chain?"));
            }
            let ifd = Ifd::read(src, header, offset).map_err(|e| format!("IFD {}: {e}", ifds.len()))?;
            offset = ifd.next;
            ifds.push(ifd);
        }
        if ifds.is_empty() {
            return Err("no image directory (first IFD offset is 0)".into());
        }
        Ok(ifds)
    }

    pub(crate) fn entry(&self, tag: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// Raw value bytes of `tag` in file byte order, `None` when absent.
    pub(crate) fn raw(&self, src: &Source, tag: u16) -> Result<Option<(FieldType, Vec<u8>)>, String> {
        let Some(e) = self.entry(tag) else { return Ok(None) };
        let size = e
            .count
            .checked_mul(e.field_type.size())
            .ok_or_else(|| format!("{} ({tag}): count {} overflows", tag_name(tag), e.count))?;
        let bytes = match &e.value {
            ValueBytes::Inline(b) => b[..size as usize].to_vec(),
            ValueBytes::At(offset) => {
                src.read_vec(*offset, size).map_err(|err| format!("{} ({tag}): {err}", tag_name(tag)))?
            }
        };
        Ok(Some((e.field_type, bytes)))
    }

    /// Unsigned integer values (BYTE, SHORT, LONG, LONG8, IFD, IFD8) of `tag`.
    pub(crate) fn uints(&self, src: &Source, tag: u16) -> Result<Option<Vec<u64>>, String> {
        let Some((ty, bytes)) = self.raw(src, tag)? else { return Ok(None) };
        let order = self.order;
        let values = match ty {
            FieldType::Byte | FieldType::Undefined => bytes.iter().map(|&b| u64::from(b)).collect(),
            FieldType::Short => bytes.chunks_exact(2).map(|c| u64::from(order.u16(c))).collect(),
            FieldType::Long | FieldType::Ifd => bytes.chunks_exact(4).map(|c| u64::from(order.u32(c))).collect(),
            FieldType::Long8 | FieldType::Ifd8 => bytes.chunks_exact(8).map(|c| order.u64(c)).collect(),
            other => return Err(format!("{} ({tag}) has type {other:?}, expected an unsigned integer", tag_name(tag))),
        };
        Ok(Some(values))
    }

    /// The single unsigned integer value of `tag` (first of several).
    pub(crate) fn uint(&self, src: &Source, tag: u16) -> Result<Option<u64>, String> {
        match self.uints(src, tag)? {
            None => Ok(None),
            Some(v) => v.first().copied().map(Some).ok_or_else(|| format!("{} ({tag}) has no value", tag_name(tag))),
        }
    }

    /// The first value of a numeric tag as a float (RATIONAL and friends, or integers).
    pub(crate) fn float(&self, src: &Source, tag: u16) -> Result<Option<f64>, String> {
        let Some((ty, bytes)) = self.raw(src, tag)? else { return Ok(None) };
        let order = self.order;
        if bytes.len() < ty.size() as usize {
            return Ok(None);
        }
        let b = &bytes[..];
        let value = match ty {
            FieldType::Rational => {
                let (n, d) = (order.u32(&b[0..4]), order.u32(&b[4..8]));
                if d == 0 {
                    return Ok(None);
                }
                f64::from(n) / f64::from(d)
            }
            FieldType::SRational => {
                let (n, d) = (order.u32(&b[0..4]) as i32, order.u32(&b[4..8]) as i32);
                if d == 0 {
                    return Ok(None);
                }
                f64::from(n) / f64::from(d)
            }
            FieldType::Float => f64::from(f32::from_bits(order.u32(b))),
            FieldType::Double => f64::from_bits(order.u64(b)),
            _ => match self.uint(src, tag)? {
                Some(v) => v as f64,
                None => return Ok(None),
            },
        };
        Ok(Some(value))
    }

    /// Text of an ASCII tag, up to the first NUL; invalid UTF-8 is replaced.
    pub(crate) fn ascii(&self, src: &Source, tag: u16) -> Result<Option<String>, String> {
        let Some((_, bytes)) = self.raw(src, tag)? else { return Ok(None) };
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Ok(Some(String::from_utf8_lossy(&bytes[..end]).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal little-endian classic TIFF: one IFD with the given (tag, type, count, value).
    fn classic(entries: &[(u16, u16, u32, u32)], next: u32) -> Vec<u8> {
        let mut b = b"II*\0\x08\0\0\0".to_vec();
        b.extend((entries.len() as u16).to_le_bytes());
        for &(tag, ty, count, value) in entries {
            b.extend(tag.to_le_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(count.to_le_bytes());
            b.extend(value.to_le_bytes());
        }
        b.extend(next.to_le_bytes());
        b
    }

    fn source(bytes: &[u8]) -> (tempfile::NamedTempFile, Source) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let src = Source::open(f.path()).unwrap();
        (f, src)
    }

    #[test]
    fn reads_inline_short_and_long_values() {
        let (_f, src) = source(&classic(&[(256, 3, 1, 300), (257, 4, 1, 200)], 0));
        let header = Header::read(&src).unwrap();
        let ifds = Ifd::read_chain(&src, &header).unwrap();
        assert_eq!(ifds.len(), 1);
        assert_eq!(ifds[0].uint(&src, 256).unwrap(), Some(300));
        assert_eq!(ifds[0].uint(&src, 257).unwrap(), Some(200));
        assert_eq!(ifds[0].uint(&src, 258).unwrap(), None);
    }

    #[test]
    fn chain_loop_and_bad_offsets_are_errors() {
        let (_f, src) = source(&classic(&[(256, 3, 1, 1)], 8));
        let header = Header::read(&src).unwrap();
        assert!(Ifd::read_chain(&src, &header).unwrap_err().contains("loops"));

        let (_f, src) = source(&classic(&[(256, 3, 1, 1)], 9999));
        let header = Header::read(&src).unwrap();
        assert!(Ifd::read_chain(&src, &header).unwrap_err().contains("outside the file"));

        let (_f, src) = source(&classic(&[(273, 4, 1000, 4000)], 0));
        let header = Header::read(&src).unwrap();
        let ifd = &Ifd::read_chain(&src, &header).unwrap()[0];
        assert!(ifd.uints(&src, 273).unwrap_err().contains("past the end"));
    }

    #[test]
    fn not_a_tiff() {
        let (_f, src) = source(b"\x89PNG\r\n\x1a\n0000000000");
        assert!(Header::read(&src).unwrap_err().contains("not a TIFF"));
        let (_f, src) = source(b"II");
        assert!(Header::read(&src).unwrap_err().contains("too short"));
    }
}
