//! Reads back the TIFFs that [`crate::tiff_writer`] makes (one tiled RGB level, JPEG or Deflate
//! with predictor), for the appearance statistics, the baseline detector and the tests. It is
//! not a general TIFF reader; that lives in `midog-data`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::config::Compression;
use crate::error::SynthError;

/// A decoded image: interleaved RGB8 plus the resolution from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub um_per_px: f64,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

struct Field {
    kind: u16,
    count: u64,
    bytes: Vec<u8>,
}

impl Field {
    fn values(&self) -> Vec<u64> {
        let size = match self.kind {
            1 | 2 | 7 => 1,
            3 => 2,
            4 => 4,
            5 => 8,
            16 => 8,
            _ => 1,
        };
        (0..self.count as usize)
            .map(|i| {
                let b = &self.bytes[i * size..(i + 1) * size];
                match self.kind {
                    3 => u16::from_le_bytes([b[0], b[1]]) as u64,
                    4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
                    16 => u64::from_le_bytes(b.try_into().expect("8 bytes")),
                    _ => b[0] as u64,
                }
            })
            .collect()
    }
}

/// Decodes the whole first image of a TIFF written by this crate.
pub fn read_rgb_tiff(path: &Path) -> Result<RgbImage, SynthError> {
    let data = std::fs::read(path).map_err(|e| SynthError::io(path, e))?;
    let bad = |m: &str| SynthError::tiff(path, m);
    if data.len() < 16 || &data[..2] != b"II" {
        return Err(bad("not a little-endian TIFF"));
    }
    let u16_at = |o: usize| -> Result<u16, SynthError> {
        data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(|| bad("truncated"))
    };
    let u32_at = |o: usize| -> Result<u32, SynthError> {
        data.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4"))).ok_or_else(|| bad("truncated"))
    };
    let u64_at = |o: usize| -> Result<u64, SynthError> {
        data.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8"))).ok_or_else(|| bad("truncated"))
    };
    let big = match u16_at(2)? {
        42 => false,
        43 => true,
        _ => return Err(bad("bad magic number")),
    };
    let ifd = if big { u64_at(8)? as usize } else { u32_at(4)? as usize };
    let (n, mut p) = if big { (u64_at(ifd)? as usize, ifd + 8) } else { (u16_at(ifd)? as usize, ifd + 2) };
    let mut fields = BTreeMap::new();
    for _ in 0..n {
        let tag = u16_at(p)?;
        let kind = u16_at(p + 2)?;
        let (count, val_at, inline) =
            if big { (u64_at(p + 4)?, p + 12, 8usize) } else { (u32_at(p + 4)? as u64, p + 8, 4usize) };
        let size = match kind {
            3 => 2,
            4 => 4,
            5 | 16 => 8,
            _ => 1,
        } * count as usize;
        let start = if size <= inline {
            val_at
        } else if big {
            u64_at(val_at)? as usize
        } else {
            u32_at(val_at)? as usize
        };
        let bytes = data.get(start..start + size).ok_or_else(|| bad("field outside the file"))?.to_vec();
        fields.insert(tag, Field { kind, count, bytes });
        p += if big { 20 } else { 12 };
    }
    let one = |tag: u16| -> Result<u64, SynthError> {
        fields.get(&tag).and_then(|f| f.values().first().copied()).ok_or_else(|| bad(&format!("tag {tag} missing")))
    };
    let (width, height) = (one(256)? as u32, one(257)? as u32);
    let tile = one(322)? as u32;
    let compression = one(259)?;
    let predictor = fields.get(&317).map(|f| f.values()[0]).unwrap_or(1);
    let offs = fields.get(&324).ok_or_else(|| bad("no TileOffsets"))?.values();
    let counts = fields.get(&325).ok_or_else(|| bad("no TileByteCounts"))?.values();
    let um_per_px = match (fields.get(&282), one(296).unwrap_or(2)) {
        (Some(f), 3) if f.bytes.len() == 8 => {
            let num = u32::from_le_bytes(f.bytes[..4].try_into().expect("4")) as f64;
            let den = u32::from_le_bytes(f.bytes[4..].try_into().expect("4")) as f64;
            1e4 / (num / den)
        }
        _ => 0.0,
    };
    let across = width.div_ceil(tile) as usize;
    let t = tile as usize;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    for (k, (&o, &c)) in offs.iter().zip(&counts).enumerate() {
        let src = data.get(o as usize..(o + c) as usize).ok_or_else(|| bad("tile outside the file"))?;
        let codec = match compression {
            7 => Compression::Jpeg { quality: 0 },
            8 | 32946 if predictor == 2 => Compression::Deflate,
            other => return Err(bad(&format!("compression {other} (predictor {predictor}) not supported"))),
        };
        let rgb = decode_tile(src, codec, tile).map_err(|e| bad(&format!("tile {k}: {e}")))?;
        if rgb.len() != t * t * 3 {
            return Err(bad(&format!("tile {k} decoded to {} bytes", rgb.len())));
        }
        let (tx, ty) = ((k % across) * t, (k / across) * t);
        for row in 0..t {
            let y = ty + row;
            if y >= height as usize {
                break;
            }
            let wcopy = t.min(width as usize - tx);
            let dst = (y * width as usize + tx) * 3;
            pixels[dst..dst + wcopy * 3].copy_from_slice(&rgb[row * t * 3..(row * t + wcopy) * 3]);
        }
    }
    Ok(RgbImage { width, height, um_per_px, pixels })
}

/// Decompresses one tile written by [`crate::tiff_writer::encode_tile`] back to RGB8.
pub fn decode_tile(src: &[u8], compression: Compression, tile_size: u32) -> Result<Vec<u8>, String> {
    let t = tile_size as usize;
    match compression {
        Compression::Jpeg { .. } => {
            let mut d = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(src));
            d.decode().map_err(|e| format!("JPEG: {e:?}"))
        }
        Compression::Deflate => {
            let mut out = Vec::with_capacity(t * t * 3);
            flate2::read::ZlibDecoder::new(src).read_to_end(&mut out).map_err(|e| format!("deflate: {e}"))?;
            for row in out.chunks_exact_mut(t * 3) {
                for i in 3..row.len() {
                    row[i] = row[i].wrapping_add(row[i - 3]);
                }
            }
            Ok(out)
        }
    }
}
