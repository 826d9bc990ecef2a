//! MIDOG 2021 data: the annotation file, scanners, TIFF region reads, and patch loading.

pub mod error;
pub mod midog;
pub mod scanner;

pub use error::DataError;
pub use midog::{AnnotationEntry, Category, ImageEntry, MidogJson};
pub use scanner::{Scanner, ScannerMap};
