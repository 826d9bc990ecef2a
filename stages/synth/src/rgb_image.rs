//! A whole image in memory as interleaved RGB8 with its resolution: what the renderer produces
//! ([`crate::dataset::render_image`]) and what the appearance statistics and the baseline
//! detector measure. Files are read back with midog-data's TIFF reader, the one every pipeline
//! stage uses, so the tests that read generated files also check that the pipeline can read them.

use std::path::Path;
use std::sync::Arc;

use midog_data::{DataError, TiffImage, TileCache};

use crate::error::SynthError;

#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub um_per_px: f64,
    /// `width * height * 3` bytes, row-major.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Reads level 0 of a TIFF whole, with the resolution from its tags. A file without a
    /// resolution is an error: every measurement here is in µm.
    pub fn read(path: &Path) -> Result<RgbImage, SynthError> {
        let data = |source: DataError| SynthError::Data { path: path.to_path_buf(), source };
        // Each chunk is read exactly once, so a cache would only cost memory.
        let tiff = TiffImage::open_with_cache(path, Arc::new(TileCache::new(0))).map_err(data)?;
        let um_per_px = tiff.um_per_px().ok_or_else(|| SynthError::NoResolution { path: path.to_path_buf() })?;
        RgbImage::from_tiff(&tiff, um_per_px).map_err(data)
    }

    /// Level 0 of an open TIFF whole, at a resolution the caller knows (e.g. from a dataset
    /// manifest that fell back to the scanner's nominal value).
    pub fn from_tiff(tiff: &TiffImage, um_per_px: f64) -> Result<RgbImage, DataError> {
        let (width, height) = (tiff.width(), tiff.height());
        let pixels = tiff.read_region_vec(0, 0, 0, width, height)?;
        Ok(RgbImage { width, height, um_per_px, pixels })
    }

    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// The `w` × `h` region at (`x0`, `y0`), clipped to the image.
    pub fn crop(&self, x0: u32, y0: u32, w: u32, h: u32) -> RgbImage {
        let (x0, y0) = (x0.min(self.width), y0.min(self.height));
        let (w, h) = (w.min(self.width - x0), h.min(self.height - y0));
        let mut pixels = Vec::with_capacity(w as usize * h as usize * 3);
        for y in y0..y0 + h {
            let start = (y as usize * self.width as usize + x0 as usize) * 3;
            pixels.extend_from_slice(&self.pixels[start..start + w as usize * 3]);
        }
        RgbImage { width: w, height: h, um_per_px: self.um_per_px, pixels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_clips_to_the_image() {
        let pixels: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8).collect();
        let img = RgbImage { width: 4, height: 3, um_per_px: 0.25, pixels };
        let c = img.crop(2, 1, 5, 5);
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(c.pixel(0, 0), img.pixel(2, 1));
        assert_eq!(c.pixel(1, 1), img.pixel(3, 2));
        assert_eq!(img.crop(9, 9, 2, 2).pixels.len(), 0);
    }
}
