//! Region reads of 8-bit RGB(A) TIFFs, pyramidal or not: our own IFD parsing (classic and
//! BigTIFF, either byte order), tiled and stripped layouts, none / LZW / Deflate (with the
//! horizontal predictor) / JPEG (with JPEGTables; YCbCr or RGB photometric).
//!
//! ```no_run
//! # fn main() -> Result<(), midog_data::DataError> {
//! let image = midog_data::tiff::TiffImage::open("001.tiff")?;
//! let mut patch = vec![0u8; 512 * 512 * 3];
//! image.read_region(0, 1000, 2000, 512, 512, &mut patch)?; // RGB, white past the border
//! # Ok(()) }
//! ```

mod cache;
mod codec;
mod ifd;
mod image;
mod info;
mod jpeg;
mod level;
mod resolution;
mod source;
mod tags;

pub use cache::{CacheStats, TileCache};
pub use ifd::ByteOrder;
pub use image::{DEFAULT_CACHE_BYTES, TiffImage};
pub use info::TiffInfo;
pub use level::{ChunkLayout, Compression, LevelInfo, Photometric};
