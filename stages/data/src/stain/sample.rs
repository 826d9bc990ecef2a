//! The pixels an image's stain statistics come from: a fixed, evenly spaced grid of regions
//! (no randomness, so the same image always gives the same statistics), whole-image reads
//! being far too slow for 40-megapixel slides.

use crate::error::DataError;
use crate::tiff::TiffImage;

/// Regions per side of the grid (16 regions).
pub const SAMPLE_REGIONS: u32 = 4;
/// Side of each region in level-0 pixels.
pub const SAMPLE_REGION_PX: u32 = 256;

/// Interleaved RGB of the sample regions of `image` (regions overlap on small images).
pub fn sample_image(image: &TiffImage) -> Result<Vec<u8>, DataError> {
    let side = SAMPLE_REGION_PX;
    let (w, h) = (image.width(), image.height());
    let place = |extent: u32, i: u32| -> i64 {
        let room = extent.saturating_sub(side);
        i64::from(room) * i64::from(2 * i + 1) / i64::from(2 * SAMPLE_REGIONS)
    };
    let (rw, rh) = (side.min(w), side.min(h));
    let mut out = Vec::with_capacity((SAMPLE_REGIONS * SAMPLE_REGIONS * rw * rh * 3) as usize);
    for j in 0..SAMPLE_REGIONS {
        for i in 0..SAMPLE_REGIONS {
            out.extend(image.read_region_vec(0, place(w, i), place(h, j), rw, rh)?);
        }
    }
    Ok(out)
}
