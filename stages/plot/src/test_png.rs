//! Test helpers: decode a written PNG and look at its pixels.

use std::path::Path;

use plotters::style::RGBColor;

pub(crate) struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

pub(crate) fn read_png(path: &Path) -> Decoded {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    buf.truncate(frame.buffer_size());
    assert_eq!((frame.color_type, frame.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
    Decoded { width: frame.width, height: frame.height, rgb: buf }
}

/// Pixels of exactly this colour.
pub(crate) fn count_colour(img: &Decoded, RGBColor(r, g, b): RGBColor) -> usize {
    img.rgb.chunks_exact(3).filter(|p| p == &[r, g, b]).count()
}

/// Pixels that are not white.
pub(crate) fn count_inked(img: &Decoded) -> usize {
    img.rgb.chunks_exact(3).filter(|p| p != &[255, 255, 255]).count()
}
