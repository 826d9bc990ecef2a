//! Writing pictures: every chart and image is drawn into an RGB8 buffer in memory and encoded
//! here with the `png` crate (already built for the data crate), so plotters' `image`-based file
//! encoder, and its JPEG and BMP codecs, are not needed.

use std::fmt::Display;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::error::PlotError;

/// Rejects a target that is not a `.png` file or has no pixels, before any drawing.
pub(crate) fn check_png_target(path: &Path, width: u32, height: u32) -> Result<(), PlotError> {
    let is_png = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(PlotError::NotPng { path: path.to_path_buf() });
    }
    if width == 0 || height == 0 {
        return Err(PlotError::EmptySize { path: path.to_path_buf(), width, height });
    }
    Ok(())
}

/// Any drawing error, as one that names the file.
pub(crate) fn draw_error(path: &Path, e: impl Display) -> PlotError {
    PlotError::Draw { path: path.to_path_buf(), message: e.to_string() }
}

/// Encodes `rgb` (row-major RGB8, `width · height · 3` bytes) as an 8-bit RGB PNG at `path`.
pub(crate) fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), PlotError> {
    let io = |e: std::io::Error| PlotError::Io { path: path.to_path_buf(), source: e };
    let encoding = |e: png::EncodingError| draw_error(path, format!("PNG encoding: {e}"));
    let file = File::create(path).map_err(io)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encoding)?;
    writer.write_image_data(rgb).map_err(encoding)?;
    writer.finish().map_err(encoding)
}
