//! MIDOG data: the annotation file (MIDOG.json, MIDOG++.json), domains (scanners, tumour types, the
//! domain table), TIFF region reads, and patch loading.

pub mod domain_names;
pub mod domain_table;
pub mod domains;
pub mod error;
pub mod loader;
pub mod midog;
pub mod png_image;
pub mod scanner;
pub mod stain;
pub mod tiff;

pub use domain_table::{DomainTable, OfficialSet};
pub use domains::{DatasetDomains, DomainSummary, ImageDomains};
pub use error::{ChunkKind, DataError};
pub use midog::{AnnotationEntry, Category, ImageEntry, MidogJson};
pub use png_image::{read_png_rgb, write_png_rgb};
pub use scanner::{Scanner, ScannerMap, parse_id_ranges};
pub use tiff::{TiffImage, TiffInfo, TileCache};
