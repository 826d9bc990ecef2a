//! JPEG chunks: splice the shared JPEGTables in front of the chunk's stream, decode with
//! zune-jpeg, and let the TIFF's Photometric tag (the only authority on what the three
//! components are) decide the colour conversion.
//!
//! zune-jpeg guesses the colour space from markers (JFIF, Adobe APP14, component ids 'R' 'G'
//! 'B') and would convert YCbCr itself; TIFF writers set those markers inconsistently, and an
//! Adobe transform 0 even reads as CMYK. So APPn segments are dropped while splicing, the decoder
//! reports the stream's colour space, and the Photometric tag decides: RGB streams are never
//! converted; YCbCr is converted with full-range BT.601 (zune-jpeg's SIMD path when it agrees
//! that the stream is YCbCr, else libjpeg's exact fixed-point tables here), as libjpeg does.
//!
//! The decoder runs in strict mode: without it zune-jpeg paints the rest of a tile grey (128)
//! when its entropy-coded data is corrupt or ends early, and reports success, so a damaged tile
//! would be read as a grey square and learnt from without a word.

use std::sync::OnceLock;

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::level::Photometric;

/// Decodes one JPEG chunk to interleaved RGB, `width` × `rows` pixels.
pub(crate) fn decode(
    data: &[u8],
    tables: Option<&[u8]>,
    width: u32,
    rows: u32,
    photometric: Photometric,
) -> Result<Vec<u8>, String> {
    let stream = splice(tables, data)?;
    let options = DecoderOptions::default().set_max_width(1 << 16).set_max_height(1 << 16).set_strict_mode(true);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(&stream[..]), options);
    decoder.decode_headers().map_err(|e| format!("JPEG header: {e:?}"))?;
    let info = decoder.info().ok_or("JPEG header: no frame")?;
    if info.components != 3 {
        return Err(format!("JPEG has {} components, expected 3", info.components));
    }
    let (jw, jh) = (u32::from(info.width), u32::from(info.height));
    if jw != width || jh < rows {
        return Err(format!("JPEG is {jw} × {jh} px, expected {width} × {rows}"));
    }
    let stream_space = match decoder.input_colorspace() {
        Some(cs @ (ColorSpace::YCbCr | ColorSpace::RGB)) => cs,
        other => return Err(format!("JPEG colour space {other:?} is not supported")),
    };
    // Where zune-jpeg and the TIFF agree on YCbCr, its SIMD conversion (the same BT.601
    // full-range maths) is used; otherwise raw components, converted here if the TIFF says so.
    let zune_converts = stream_space == ColorSpace::YCbCr && photometric == Photometric::YCbCr;
    let out_space = if zune_converts { ColorSpace::RGB } else { stream_space };
    decoder.set_options(options.jpeg_set_out_colorspace(out_space));
    let mut out = vec![0u8; jw as usize * jh as usize * 3];
    decoder.decode_into(&mut out).map_err(|e| format!("JPEG data: {e:?}"))?;
    out.truncate(width as usize * rows as usize * 3);
    if photometric == Photometric::YCbCr && !zune_converts {
        ycbcr_to_rgb(&mut out);
    }
    Ok(out)
}

/// One stream: SOI, the table segments of JPEGTables (if any), then the chunk's segments from
/// after its SOI to the end, without APPn segments.
fn splice(tables: Option<&[u8]>, chunk: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(chunk.len() + tables.map_or(0, <[u8]>::len));
    out.extend_from_slice(&[0xFF, 0xD8]);
    if let Some(tables) = tables
        && tables.len() > 4
    {
        copy_segments(tables, &mut out).map_err(|e| format!("JPEGTables: {e}"))?;
    }
    copy_segments(chunk, &mut out)?;
    Ok(out)
}

/// Copies the marker segments of `src` (which must start with SOI) to `out`, dropping SOI,
/// EOI and APPn; from SOS on, the rest (entropy-coded data) is copied verbatim.
fn copy_segments(src: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if src.len() < 4 || src[0] != 0xFF || src[1] != 0xD8 {
        return Err("JPEG stream does not start with SOI".into());
    }
    let mut i = 2;
    while i < src.len() {
        if src[i] != 0xFF {
            return Err(format!("JPEG: expected a marker at byte {i}"));
        }
        while i + 1 < src.len() && src[i + 1] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = src.get(i + 1) else { break };
        match marker {
            0xD9 => return Ok(()),
            0xDA => {
                out.extend_from_slice(&src[i..]);
                return Ok(());
            }
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&src[i..i + 2]);
                i += 2;
            }
            _ => {
                let len = match src.get(i + 2..i + 4) {
                    Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return Err(format!("JPEG: segment length missing at byte {i}")),
                };
                let end = i + 2 + len;
                if len < 2 || end > src.len() {
                    return Err(format!("JPEG: segment 0xFF{marker:02X} at byte {i} overruns the data"));
                }
                if !(0xE0..=0xEF).contains(&marker) {
                    out.extend_from_slice(&src[i..end]);
                }
                i = end;
            }
        }
    }
    Ok(())
}

/// libjpeg's YCbCr → RGB tables (jdcolor.c, 16-bit fixed point).
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

fn ycc_tables() -> &'static YccTables {
    static TABLES: OnceLock<YccTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        const HALF: i32 = 1 << 15;
        let fix = |x: f64| (x * 65536.0 + 0.5) as i32;
        let mut t = YccTables { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        for i in 0..256 {
            let x = i as i32 - 128;
            t.cr_r[i] = (fix(1.40200) * x + HALF) >> 16;
            t.cb_b[i] = (fix(1.77200) * x + HALF) >> 16;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + HALF;
        }
        t
    })
}

/// Full-range BT.601 YCbCr → RGB in place, exactly as libjpeg-turbo's non-SIMD path.
pub(crate) fn ycbcr_to_rgb(pixels: &mut [u8]) {
    let t = ycc_tables();
    for px in pixels.chunks_exact_mut(3) {
        let (y, cb, cr) = (i32::from(px[0]), usize::from(px[1]), usize::from(px[2]));
        px[0] = (y + t.cr_r[cr]).clamp(0, 255) as u8;
        px[1] = (y + ((t.cb_g[cb] + t.cr_g[cr]) >> 16)).clamp(0, 255) as u8;
        px[2] = (y + t.cb_b[cb]).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycbcr_pixel_of_the_design_notes_converts_to_its_rgb() {
        let mut px = [200, 138, 153, 128, 128, 128, 0, 255, 255];
        ycbcr_to_rgb(&mut px);
        assert_eq!(&px[..3], &[235, 179, 218]);
        assert_eq!(&px[3..6], &[128, 128, 128]);
        assert_eq!(&px[6..], &[178, 0, 225]);
    }

    #[test]
    fn splice_drops_app_segments_and_inner_soi_eoi() {
        let tables = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x03, 0x07, 0xFF, 0xD9];
        let chunk = [0xFF, 0xD8, 0xFF, 0xEE, 0x00, 0x03, 0x01, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xDA, 0x11, 0xFF, 0xD9];
        let s = splice(Some(&tables), &chunk).unwrap();
        assert_eq!(s, [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x03, 0x07, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xDA, 0x11, 0xFF, 0xD9]);
        assert!(splice(None, &[0xFF, 0xD8, 0xFF, 0xC0, 0x40, 0x00]).unwrap_err().contains("overruns"));
        assert!(splice(None, &[0x00, 0xD8, 0xFF, 0xC0]).unwrap_err().contains("SOI"));
    }
}
