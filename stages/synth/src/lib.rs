//! Synthetic MIDOG 2021-like datasets: tiled H&E TIFFs from four simulated scanners plus
//! MIDOG.json, realistic enough to train and score a mitosis detector end to end and to show
//! the domain shift between scanners; and MIDOG++-like multi-domain sets (several tumour types,
//! MIDOG++.json and the cross-validation table). See docs/synthetic-data.md for the generative model.

pub mod appearance;
pub mod baseline;
pub mod cell_drawing;
pub mod config;
pub mod dataset;
pub mod error;
pub mod hash_noise;
pub mod imposter;
pub mod mitosis;
pub mod nucleus;
pub mod object_features;
pub mod render;
pub mod rgb_image;
pub mod scanner_profile;
pub mod scene;
pub mod stain;
pub mod tiff_writer;
pub mod tile_codec;
pub mod tissue;
pub mod tumour_profile;

pub use appearance::{AppearanceStats, CropStats, appearance_stats, crop_stats, dataset_appearance};
pub use config::{Compression, MultiDomain, SynthConfig};
pub use dataset::{HELDOUT_LABELS_FILE, SynthSummary, SyntheticTruth, generate, render_image};
pub use error::SynthError;
pub use rgb_image::RgbImage;
pub use scanner_profile::ScannerProfile;
pub use scene::{ImagePlan, ImageScene, TruthClass, TruthObject, plan_images, plan_tumour_images};
pub use tumour_profile::TumourProfile;

/// Version of the generator's output (2: the GT450 held-out domain and its labels file): bump it whenever the same config and seed produce
/// different files, so cached synthetic datasets (and everything trained on them) are rebuilt.
pub const GENERATOR_VERSION: u32 = 2;
