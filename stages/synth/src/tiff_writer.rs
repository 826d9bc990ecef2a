//! A tiled TIFF writer for whole-slide-like images: little-endian, classic TIFF (BigTIFF when
//! the file would pass 4 GiB), one RGB level in square tiles compressed with JPEG (each tile a
//! self-contained baseline JPEG in YCbCr 4:2:0, Photometric = YCbCr, as in JPEG slide files) or
//! Deflate with the horizontal predictor. Resolution is stored in pixels per centimetre so
//! readers get the scanner's µm/px.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::config::Compression;
use crate::error::SynthError;

/// What a TIFF header needs besides the tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct TiffLayout {
    pub width: u32,
    pub height: u32,
    pub tile_size: u32,
    pub um_per_px: f64,
    pub compression: Compression,
    pub description: String,
    pub software: String,
}

impl TiffLayout {
    pub fn tiles_across(&self) -> u32 {
        self.width.div_ceil(self.tile_size)
    }

    pub fn tiles_down(&self) -> u32 {
        self.height.div_ceil(self.tile_size)
    }
}

const SHORT: u16 = 3;
const LONG: u16 = 4;
const RATIONAL: u16 = 5;
const ASCII: u16 = 2;
const LONG8: u16 = 16;

struct Entry {
    tag: u16,
    kind: u16,
    count: u64,
    data: Vec<u8>,
}

fn shorts(tag: u16, v: &[u16]) -> Entry {
    Entry { tag, kind: SHORT, count: v.len() as u64, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn longs(tag: u16, v: &[u32]) -> Entry {
    Entry { tag, kind: LONG, count: v.len() as u64, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn offsets(tag: u16, v: &[u64], big: bool) -> Entry {
    if big {
        Entry { tag, kind: LONG8, count: v.len() as u64, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    } else {
        longs(tag, &v.iter().map(|&x| x as u32).collect::<Vec<_>>())
    }
}

fn ascii(tag: u16, s: &str) -> Entry {
    let mut data: Vec<u8> = s.bytes().filter(|b| b.is_ascii() && *b != 0).collect();
    data.push(0);
    Entry { tag, kind: ASCII, count: data.len() as u64, data }
}

fn rational(tag: u16, num: u32, den: u32) -> Entry {
    let mut data = num.to_le_bytes().to_vec();
    data.extend_from_slice(&den.to_le_bytes());
    Entry { tag, kind: RATIONAL, count: 1, data }
}

/// Writes `tiles` (row-major, already compressed) as a tiled TIFF at `path`, via a temporary
/// file renamed into place so no half-written image is ever visible under its final name.
pub fn write_tiled_tiff(path: &Path, layout: &TiffLayout, tiles: &[Vec<u8>]) -> Result<(), SynthError> {
    let data_bytes: u64 = tiles.iter().map(|t| t.len() as u64).sum();
    // Headroom for the directory and its arrays.
    let big = data_bytes + 64 * tiles.len() as u64 + 65_536 > u32::MAX as u64;
    write_tiled_tiff_as(path, layout, tiles, big)
}

/// As [`write_tiled_tiff`], choosing classic TIFF or BigTIFF explicitly.
pub fn write_tiled_tiff_as(path: &Path, layout: &TiffLayout, tiles: &[Vec<u8>], big: bool) -> Result<(), SynthError> {
    let expected = (layout.tiles_across() * layout.tiles_down()) as usize;
    if tiles.len() != expected {
        return Err(SynthError::encode(path, format!("{} tiles given, layout needs {expected}", tiles.len())));
    }
    let data_bytes: u64 = tiles.iter().map(|t| t.len() as u64).sum();
    let header_len: u64 = if big { 16 } else { 8 };

    let mut tile_offsets = Vec::with_capacity(tiles.len());
    let mut pos = header_len;
    for t in tiles {
        tile_offsets.push(pos);
        pos += t.len() as u64;
    }
    if pos % 2 == 1 {
        pos += 1;
    }
    let ifd_offset = pos;

    let (compression_code, photometric) = match layout.compression {
        Compression::Jpeg { .. } => (7u16, 6u16),
        Compression::Deflate => (8u16, 2u16),
        Compression::None => (1u16, 2u16),
    };
    // Pixels per centimetre as a rational: 10^8 / (µm/px · 10^4).
    let den = (layout.um_per_px * 1e4).round().max(1.0) as u32;
    let mut entries = vec![
        longs(254, &[0]),
        longs(256, &[layout.width]),
        longs(257, &[layout.height]),
        shorts(258, &[8, 8, 8]),
        shorts(259, &[compression_code]),
        shorts(262, &[photometric]),
        ascii(270, &layout.description),
        shorts(277, &[3]),
        rational(282, 100_000_000, den),
        rational(283, 100_000_000, den),
        shorts(284, &[1]),
        shorts(296, &[3]),
        ascii(305, &layout.software),
        longs(322, &[layout.tile_size]),
        longs(323, &[layout.tile_size]),
        offsets(324, &tile_offsets, big),
        offsets(325, &tiles.iter().map(|t| t.len() as u64).collect::<Vec<_>>(), big),
    ];
    match layout.compression {
        Compression::Deflate => entries.push(shorts(317, &[2])),
        Compression::Jpeg { .. } => entries.push(shorts(530, &[2, 2])),
        Compression::None => {}
    }
    entries.sort_by_key(|e| e.tag);

    let (entry_len, count_len, next_len, inline) = if big { (20u64, 8u64, 8u64, 8usize) } else { (12, 2, 4, 4) };
    let ifd_len = count_len + entry_len * entries.len() as u64 + next_len;
    let mut extra_pos = ifd_offset + ifd_len;
    let mut ifd = Vec::with_capacity(ifd_len as usize);
    let mut extra = Vec::new();
    if big {
        ifd.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    } else {
        ifd.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    }
    for e in &entries {
        ifd.extend_from_slice(&e.tag.to_le_bytes());
        ifd.extend_from_slice(&e.kind.to_le_bytes());
        if big {
            ifd.extend_from_slice(&e.count.to_le_bytes());
        } else {
            ifd.extend_from_slice(&(e.count as u32).to_le_bytes());
        }
        if e.data.len() <= inline {
            let mut v = e.data.clone();
            v.resize(inline, 0);
            ifd.extend_from_slice(&v);
        } else {
            if big {
                ifd.extend_from_slice(&extra_pos.to_le_bytes());
            } else {
                ifd.extend_from_slice(&(extra_pos as u32).to_le_bytes());
            }
            extra.extend_from_slice(&e.data);
            extra_pos += e.data.len() as u64;
            if extra_pos % 2 == 1 {
                extra.push(0);
                extra_pos += 1;
            }
        }
    }
    ifd.extend(std::iter::repeat_n(0u8, next_len as usize));

    let tmp = path.with_extension("tiff.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| SynthError::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| SynthError::io(&tmp, e);
    if big {
        w.write_all(b"II").map_err(io)?;
        w.write_all(&43u16.to_le_bytes()).map_err(io)?;
        w.write_all(&8u16.to_le_bytes()).map_err(io)?;
        w.write_all(&0u16.to_le_bytes()).map_err(io)?;
        w.write_all(&ifd_offset.to_le_bytes()).map_err(io)?;
    } else {
        w.write_all(b"II").map_err(io)?;
        w.write_all(&42u16.to_le_bytes()).map_err(io)?;
        w.write_all(&(ifd_offset as u32).to_le_bytes()).map_err(io)?;
    }
    for t in tiles {
        w.write_all(t).map_err(io)?;
    }
    if (header_len + data_bytes) % 2 == 1 {
        w.write_all(&[0]).map_err(io)?;
    }
    w.write_all(&ifd).map_err(io)?;
    w.write_all(&extra).map_err(io)?;
    let file = w.into_inner().map_err(|e| SynthError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| SynthError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rgb_image::RgbImage;
    use crate::tile_codec::encode_tile;

    /// The pipeline's Python as `bin/env.sh` (which `bin/test` sources) exports it.
    fn python() -> Option<std::path::PathBuf> {
        std::env::var_os("PIPELINE_PYTHON").map(std::path::PathBuf::from).filter(|p| p.exists())
    }

    /// A smooth test image with some texture (JPEG-friendly), 300 × 200 px.
    fn test_image() -> (u32, u32, Vec<u8>) {
        let (w, h) = (300u32, 200u32);
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let v = ((x as f32 / 9.0).sin() * 40.0 + (y as f32 / 13.0).cos() * 30.0) as i32;
                px.extend_from_slice(&[(180 + v).clamp(0, 255) as u8, (120 - v / 2).clamp(0, 255) as u8, 190]);
            }
        }
        (w, h, px)
    }

    fn tiles_of(w: u32, h: u32, px: &[u8], t: u32, c: Compression) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for ty in (0..h).step_by(t as usize) {
            for tx in (0..w).step_by(t as usize) {
                let mut tile = vec![255u8; (t * t * 3) as usize];
                for y in 0..t.min(h - ty) {
                    for x in 0..t.min(w - tx) {
                        let s = (((ty + y) * w + tx + x) * 3) as usize;
                        let d = ((y * t + x) * 3) as usize;
                        tile[d..d + 3].copy_from_slice(&px[s..s + 3]);
                    }
                }
                out.push(encode_tile(&tile, t, c).unwrap());
            }
        }
        out
    }

    fn layout(w: u32, h: u32, c: Compression) -> TiffLayout {
        TiffLayout {
            width: w,
            height: h,
            tile_size: 128,
            um_per_px: 0.23,
            compression: c,
            description: "midog-synth test; seed=5".into(),
            software: "midog-synth".into(),
        }
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.len() as f64
    }

    #[test]
    fn deflate_round_trips_exactly_and_jpeg_closely_in_classic_and_big_tiff() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h, px) = test_image();
        for big in [false, true] {
            for c in [Compression::Deflate, Compression::None, Compression::Jpeg { quality: 90 }] {
                let path = dir.path().join(format!("t-{big}-{c:?}.tiff").replace([' ', '{', '}', ':'], ""));
                write_tiled_tiff_as(&path, &layout(w, h, c), &tiles_of(w, h, &px, 128, c), big).unwrap();
                let img = RgbImage::read(&path).unwrap();
                assert_eq!((img.width, img.height), (w, h));
                assert!((img.um_per_px - 0.23).abs() < 1e-9);
                let d = mean_abs_diff(&img.pixels, &px);
                if c != (Compression::Jpeg { quality: 90 }) {
                    assert_eq!(d, 0.0);
                } else {
                    assert!(d < 3.0, "JPEG round trip differs by {d}");
                }
            }
        }
    }

    #[test]
    fn wrong_tile_count_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tiff");
        let e = write_tiled_tiff(&p, &layout(300, 200, Compression::Deflate), &[]).unwrap_err().to_string();
        assert!(e.contains("x.tiff") && e.contains("tiles"), "{e}");
    }

    /// tifffile + imagecodecs (the Python stack users compare with) must decode our tiles to
    /// the pixels we encoded, for classic and BigTIFF, JPEG (YCbCr) and Deflate.
    #[test]
    fn tifffile_reads_what_we_write() {
        let Some(python) = python() else {
            eprintln!("skipped: PIPELINE_PYTHON is unset or missing (bin/test sets it)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (w, h, px) = test_image();
        let raw = dir.path().join("expected.rgb");
        std::fs::write(&raw, &px).unwrap();
        for (name, c, big) in [
            ("jpeg.tiff", Compression::Jpeg { quality: 90 }, false),
            ("deflate.tiff", Compression::Deflate, false),
            ("raw.tiff", Compression::None, false),
            ("jpeg-big.tiff", Compression::Jpeg { quality: 90 }, true),
        ] {
            let path = dir.path().join(name);
            write_tiled_tiff_as(&path, &layout(w, h, c), &tiles_of(w, h, &px, 128, c), big).unwrap();
            let script = format!(
                "import numpy as np, tifffile\n\
                 t = tifffile.TiffFile(r'{}')\n\
                 p = t.pages[0]\n\
                 a = p.asarray()\n\
                 e = np.fromfile(r'{}', dtype=np.uint8).reshape({h}, {w}, 3)\n\
                 xr = p.tags['XResolution'].value\n\
                 print(a.shape, a.dtype, float(np.abs(a.astype(float) - e).mean()), 1e4 / (xr[0] / xr[1]), p.tags['ResolutionUnit'].value, p.description)\n",
                path.display(),
                raw.display()
            );
            let out = std::process::Command::new(&python).arg("-c").arg(&script).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let fields: Vec<&str> = stdout.split(") ").collect();
            assert!(stdout.starts_with(&format!("({h}, {w}, 3) uint8")), "{name}: {stdout}");
            let nums: Vec<f64> = fields[1].split_whitespace().skip(1).take(2).map(|v| v.parse().unwrap()).collect();
            let tol = if c == (Compression::Jpeg { quality: 90 }) { 3.0 } else { 0.0 };
            assert!(nums[0] <= tol, "{name}: tifffile pixels differ by {}", nums[0]);
            assert!((nums[1] - 0.23).abs() < 1e-6, "{name}: {stdout}");
            assert!(stdout.contains("seed=5") && stdout.contains("3"), "{name}: {stdout}");
        }
    }
}
