//! One tile's compression and its inverse. The writer stores what [`encode_tile`] makes; the
//! in-memory renderer ([`crate::dataset::render_image`]) runs [`decode_tile`] on the same bytes
//! so that it shows exactly the compression artefacts a reader of the file sees, without writing
//! a file. Reading whole files back is midog-data's job (`midog_data::TiffImage`), not this
//! module's: these functions only know the codecs this generator writes.

use std::io::{Read, Write};

use crate::config::Compression;

/// Compresses one full tile of interleaved RGB8 (`tile_size`² pixels; edge tiles are padded by
/// the caller).
pub fn encode_tile(rgb: &[u8], tile_size: u32, compression: Compression) -> Result<Vec<u8>, String> {
    let n = tile_size as usize;
    if rgb.len() != n * n * 3 {
        return Err(format!("tile buffer has {} bytes, expected {}", rgb.len(), n * n * 3));
    }
    match compression {
        Compression::Jpeg { quality } => {
            let mut out = Vec::with_capacity(n * n / 4);
            let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
            enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            enc.encode(rgb, tile_size as u16, tile_size as u16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| format!("JPEG encoding failed: {e}"))?;
            Ok(out)
        }
        Compression::Deflate => {
            let mut diff = Vec::with_capacity(rgb.len());
            for row in rgb.chunks_exact(n * 3) {
                diff.extend_from_slice(&row[..3]);
                for i in 3..row.len() {
                    diff.push(row[i].wrapping_sub(row[i - 3]));
                }
            }
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            enc.write_all(&diff).map_err(|e| format!("deflate failed: {e}"))?;
            enc.finish().map_err(|e| format!("deflate failed: {e}"))
        }
        Compression::None => Ok(rgb.to_vec()),
    }
}

/// Decompresses one tile made by [`encode_tile`] back to `tile_size`² pixels of RGB8.
pub fn decode_tile(src: &[u8], compression: Compression, tile_size: u32) -> Result<Vec<u8>, String> {
    let t = tile_size as usize;
    let rgb = match compression {
        Compression::Jpeg { .. } => {
            let mut d = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(src));
            d.decode().map_err(|e| format!("JPEG: {e:?}"))?
        }
        Compression::Deflate => {
            let mut out = Vec::with_capacity(t * t * 3);
            flate2::read::ZlibDecoder::new(src).read_to_end(&mut out).map_err(|e| format!("deflate: {e}"))?;
            for row in out.chunks_exact_mut(t * 3) {
                for i in 3..row.len() {
                    row[i] = row[i].wrapping_add(row[i - 3]);
                }
            }
            out
        }
        Compression::None => src.to_vec(),
    };
    if rgb.len() != t * t * 3 {
        return Err(format!("tile decoded to {} bytes, expected {}", rgb.len(), t * t * 3));
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_is_lossless_and_jpeg_close() {
        let t = 64u32;
        let rgb: Vec<u8> = (0..t * t).flat_map(|i| [(i % 251) as u8, (i / 64 * 3) as u8, 200]).collect();
        let back = decode_tile(&encode_tile(&rgb, t, Compression::Deflate).unwrap(), Compression::Deflate, t).unwrap();
        assert_eq!(back, rgb);
        let smooth: Vec<u8> = (0..t * t).flat_map(|i| [((i % t) * 2) as u8, ((i / t) * 3) as u8, 150]).collect();
        let jpeg = Compression::Jpeg { quality: 95 };
        let back = decode_tile(&encode_tile(&smooth, t, jpeg).unwrap(), jpeg, t).unwrap();
        let diff =
            back.iter().zip(&smooth).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / smooth.len() as f64;
        assert!(diff < 3.0, "JPEG round trip differs by {diff}");
        assert!(encode_tile(&rgb[..10], t, Compression::Deflate).is_err());
    }
}
