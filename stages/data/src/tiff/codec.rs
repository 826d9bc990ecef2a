//! Decoding one stored chunk (tile or strip) into interleaved RGB: decompression, the
//! horizontal predictor, and dropping alpha. JPEG lives in `jpeg.rs`.

use flate2::{Decompress, FlushDecompress, Status};
use weezl::decode::Decoder as LzwDecoder;
use weezl::{BitOrder, LzwStatus};

use super::jpeg;
use super::level::{Compression, Level};

/// Decodes `data` (the chunk's stored bytes) holding `rows` rows of the level's chunk width.
pub(crate) fn decode_chunk(level: &Level, data: &[u8], rows: u32) -> Result<Vec<u8>, String> {
    let info = &level.info;
    let spp = usize::from(info.samples_per_pixel);
    let row_len = level.chunk_width as usize * spp;
    let expected = row_len * rows as usize;
    let mut samples = match info.compression {
        Compression::None => {
            if data.len() < expected {
                return Err(format!("{} bytes of pixel data, expected {expected}", data.len()));
            }
            data[..expected].to_vec()
        }
        Compression::Lzw => lzw(data, expected)?,
        Compression::Deflate { .. } => inflate(data, expected)?,
        Compression::Jpeg => {
            return jpeg::decode(data, level.jpeg_tables.as_deref(), level.chunk_width, rows, info.photometric);
        }
    };
    if info.predictor {
        undo_horizontal_differencing(&mut samples, row_len, spp);
    }
    if spp == 4 {
        drop_alpha(&mut samples);
    }
    Ok(samples)
}

/// TIFF LZW: MSB-first codes starting at 9 bits, switching width one code early.
fn lzw(data: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; expected];
    let mut decoder = LzwDecoder::with_tiff_size_switch(BitOrder::Msb, 8);
    let (mut input, mut filled) = (data, 0);
    while filled < expected {
        let result = decoder.decode_bytes(input, &mut out[filled..]);
        filled += result.consumed_out;
        input = &input[result.consumed_in..];
        match result.status {
            Err(e) => return Err(format!("LZW data is corrupt after {filled} of {expected} bytes: {e}")),
            Ok(LzwStatus::Done | LzwStatus::NoProgress) => break,
            Ok(LzwStatus::Ok) if result.consumed_in == 0 && result.consumed_out == 0 => break,
            Ok(LzwStatus::Ok) => {}
        }
    }
    if filled < expected {
        return Err(format!("LZW data ends after {filled} of {expected} bytes"));
    }
    Ok(out)
}

/// zlib stream (compression 8 and 32946); output beyond `expected` is ignored.
fn inflate(data: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; expected];
    let mut z = Decompress::new(true);
    while (z.total_out() as usize) < expected {
        let (in_pos, out_pos) = (z.total_in() as usize, z.total_out() as usize);
        let status = z
            .decompress(&data[in_pos..], &mut out[out_pos..], FlushDecompress::Finish)
            .map_err(|e| format!("Deflate data is corrupt after {out_pos} of {expected} bytes: {e}"))?;
        let stalled = z.total_in() as usize == in_pos && z.total_out() as usize == out_pos;
        if status == Status::StreamEnd || stalled {
            break;
        }
    }
    let filled = z.total_out() as usize;
    if filled < expected {
        return Err(format!("Deflate data ends after {filled} of {expected} bytes"));
    }
    Ok(out)
}

/// Predictor 2 for 8-bit samples: each sample was stored as the difference to the same
/// sample of the pixel to its left.
fn undo_horizontal_differencing(samples: &mut [u8], row_len: usize, spp: usize) {
    for row in samples.chunks_exact_mut(row_len) {
        for i in spp..row.len() {
            row[i] = row[i].wrapping_add(row[i - spp]);
        }
    }
}

/// RGBA → RGB in place.
fn drop_alpha(samples: &mut Vec<u8>) {
    let n = samples.len() / 4;
    for i in 0..n {
        let (s, d) = (i * 4, i * 3);
        samples[d] = samples[s];
        samples[d + 1] = samples[s + 1];
        samples[d + 2] = samples[s + 2];
    }
    samples.truncate(n * 3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn predictor_and_alpha() {
        let mut s = vec![10, 20, 30, 40, 1, 2, 3, 4];
        undo_horizontal_differencing(&mut s, 8, 4);
        assert_eq!(s, [10, 20, 30, 40, 11, 22, 33, 44]);
        drop_alpha(&mut s);
        assert_eq!(s, [10, 20, 30, 11, 22, 33]);
    }

    #[test]
    fn inflate_checks_length_and_garbage() {
        let raw: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&raw).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(inflate(&z, 1000).unwrap(), raw);
        assert!(inflate(&z, 1001).unwrap_err().contains("ends after 1000"));
        assert!(inflate(&z[..z.len() / 2], 1000).is_err());
        assert!(inflate(&[0x12, 0x34, 0x56], 1000).unwrap_err().contains("corrupt"));
    }

    #[test]
    fn lzw_round_trip_and_truncation() {
        let raw: Vec<u8> = (0..5000u32).map(|i| (i / 3 % 256) as u8).collect();
        let z = weezl::encode::Encoder::with_tiff_size_switch(BitOrder::Msb, 8).encode(&raw).unwrap();
        assert_eq!(lzw(&z, 5000).unwrap(), raw);
        assert!(lzw(&z[..z.len() / 2], 5000).unwrap_err().contains("ends after"));
    }
}
