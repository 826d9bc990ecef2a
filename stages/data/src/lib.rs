//! MIDOG 2021 data: the annotation file, scanners, TIFF region reads, and patch loading.

pub mod error;
pub mod loader;
pub mod midog;
pub mod png_image;
pub mod scanner;
pub mod stain;
pub mod tiff;

pub use error::{ChunkKind, DataError};
pub use midog::{AnnotationEntry, Category, ImageEntry, MidogJson};
pub use png_image::{read_png_rgb, write_png_rgb};
pub use scanner::{Scanner, ScannerMap, parse_id_ranges};
pub use tiff::{TiffImage, TiffInfo, TileCache};
