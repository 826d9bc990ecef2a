//! A minimal PNG writer for RGB crops (`pipeline inspect --region … --out crop.png`, docs).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::error::DataError;

/// Writes `rgb` (interleaved, `width * height * 3` bytes) as an 8-bit RGB PNG.
pub fn write_png_rgb(path: impl AsRef<Path>, width: u32, height: u32, rgb: &[u8]) -> Result<(), DataError> {
    let path = path.as_ref();
    let need = width as usize * height as usize * 3;
    if rgb.len() != need || width == 0 || height == 0 {
        return Err(DataError::invalid(path, format!("{width} × {height} RGB needs {need} bytes, got {}", rgb.len())));
    }
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| DataError::invalid(path, format!("writing PNG: {e}"));
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)
}

/// Reads an 8-bit RGB or RGBA PNG as interleaved RGB: (width, height, pixels). For tests and
/// tools that compare against reference crops.
pub fn read_png_rgb(path: impl AsRef<Path>) -> Result<(u32, u32, Vec<u8>), DataError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let png_error = |e: png::DecodingError| DataError::invalid(path, format!("reading PNG: {e}"));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(png_error)?;
    let size = reader.output_buffer_size().ok_or_else(|| DataError::invalid(path, "PNG too large"))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(png_error)?;
    buf.truncate(frame.buffer_size());
    let channels = match (frame.color_type, frame.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        other => return Err(DataError::invalid(path, format!("PNG is {other:?}, expected 8-bit RGB(A)"))),
    };
    let rgb = if channels == 3 { buf } else { buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect() };
    Ok((frame.width, frame.height, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crop.png");
        let rgb: Vec<u8> = (0..5 * 3 * 3).map(|i| i as u8 * 5).collect();
        write_png_rgb(&path, 5, 3, &rgb).unwrap();
        assert_eq!(read_png_rgb(&path).unwrap(), (5, 3, rgb));
        assert!(write_png_rgb(&path, 5, 4, &[0; 3]).is_err());
    }
}
