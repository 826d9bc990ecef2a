//! Multithreaded loading of augmented training patches from TIFFs.
//!
//! ```no_run
//! # fn main() -> Result<(), midog_data::DataError> {
//! use midog_data::loader::{LoaderConfig, LoaderImage, PatchLoader, PatchSpec};
//! let images = vec![LoaderImage { path: "001.tiff".into(), boxes: vec![[100.0, 100.0, 150.0, 150.0]], stain: None }];
//! let batches = vec![vec![PatchSpec { image: 0, x: 0, y: 0 }; 12]; 10];
//! let loader = PatchLoader::start(images, batches, LoaderConfig::default(), |bytes| vec![0u8; bytes])?;
//! for batch in loader {
//!     let batch = batch?; // batch.pixels: 12 × 512 × 512 × 3 RGB, batch.boxes: per patch
//! }
//! # Ok(()) }
//! ```

mod augment;
mod batch;
mod bench;
mod color;
mod config;
pub mod fourier;
mod geometry;
mod patch;
mod patch_loader;
mod resample;
mod style_bank;

pub use augment::PatchAugment;
pub use batch::{Batch, BatchBuffer, LoaderImage, PatchSpec};
pub use bench::{LoaderBenchConfig, LoaderBenchResult, bench_loader, random_patch_plan};
pub use config::{AugmentConfig, FourierMix, LoaderConfig};
pub use geometry::Dihedral;
pub use patch_loader::{DEFAULT_LOADER_CACHE_BYTES, PatchLoader};
