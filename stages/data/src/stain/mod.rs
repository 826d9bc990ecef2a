//! Stain normalisation: map an H&E image's colours onto a reference's, so that a detector sees
//! one staining whatever the lab and scanner.
//!
//! - [`macenko`]: Macenko et al. 2009. Per image, the two stain vectors (haematoxylin, eosin) in
//!   optical density (OD) and the 99th-percentile stain concentrations; normalising is a fixed
//!   3 × 3 matrix in OD space per image (`S_ref · diag(c_ref / c_img) · S_img⁺`), applied through
//!   lookup tables like the HED jitter of the loader.
//! - [`reinhard`]: Reinhard et al. 2001, the cheap option: match the mean and standard deviation
//!   of each channel of Ruderman's lαβ space.
//!
//! Statistics come from the tissue pixels (mean OD over the channels above [`TISSUE_OD`]) of a fixed
//! grid of regions of an image ([`sample_image`]); a reference pools the samples of several
//! images (the training images). An image without tissue is an error, never a silent identity.
//! The same functions run in training (the patch loader) and in inference (tile_infer,
//! `pipeline detect`), so both see identical pixels.

pub mod linalg;
pub mod macenko;
pub mod od;
pub mod reinhard;
mod sample;

use serde::{Deserialize, Serialize};

pub use macenko::MacenkoStains;
pub use reinhard::LabStats;
pub use sample::{SAMPLE_REGION_PX, SAMPLE_REGIONS, sample_image};

/// A pixel is tissue when its optical density, averaged over R, G and B, exceeds this (Macenko's
/// β; averaged rather than in every channel, which would drop eosin, nearly clear in red).
pub const TISSUE_OD: f32 = 0.15;
/// Fewer tissue pixels than this in a sample: "no tissue".
pub const MIN_TISSUE_PIXELS: usize = 500;

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StainMethod {
    Macenko,
    Reinhard,
}

impl StainMethod {
    pub fn name(self) -> &'static str {
        match self {
            StainMethod::Macenko => "macenko",
            StainMethod::Reinhard => "reinhard",
        }
    }
}

/// The colour statistics of one image or of a pooled reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum StainStats {
    Macenko(MacenkoStains),
    Reinhard(LabStats),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StainError {
    /// Too few tissue pixels to estimate stains from.
    #[error(
        "no tissue for stain normalisation: {tissue} of {sampled} sampled pixels have a mean optical density above {TISSUE_OD} (at least {MIN_TISSUE_PIXELS} needed)"
    )]
    NoTissue { sampled: usize, tissue: usize },
    /// The tissue pixels do not span two stains (e.g. a single flat colour).
    #[error("stain normalisation: the tissue colours do not span two stains ({0})")]
    Degenerate(String),
    #[error("stain normalisation: the image is {image} but the reference is {reference}")]
    MethodMismatch { image: &'static str, reference: &'static str },
}

impl StainStats {
    pub fn method(&self) -> StainMethod {
        match self {
            StainStats::Macenko(_) => StainMethod::Macenko,
            StainStats::Reinhard(_) => StainMethod::Reinhard,
        }
    }

    /// Statistics of interleaved RGB `pixels` (any number, e.g. samples of several images).
    pub fn estimate(method: StainMethod, pixels: &[u8]) -> Result<StainStats, StainError> {
        match method {
            StainMethod::Macenko => MacenkoStains::estimate(pixels).map(StainStats::Macenko),
            StainMethod::Reinhard => LabStats::estimate(pixels).map(StainStats::Reinhard),
        }
    }
}

/// The per-pixel map from an image's colours to the reference's.
#[derive(Debug, Clone, PartialEq)]
pub enum StainTransform {
    Macenko(macenko::OdMatrix),
    Reinhard(reinhard::LabTransform),
}

impl StainTransform {
    /// The map taking an image with statistics `image` to `reference`.
    pub fn between(image: &StainStats, reference: &StainStats) -> Result<StainTransform, StainError> {
        match (image, reference) {
            (StainStats::Macenko(i), StainStats::Macenko(r)) => Ok(StainTransform::Macenko(i.transform_to(r))),
            (StainStats::Reinhard(i), StainStats::Reinhard(r)) => Ok(StainTransform::Reinhard(i.transform_to(r))),
            (i, r) => Err(StainError::MethodMismatch { image: i.method().name(), reference: r.method().name() }),
        }
    }

    /// Normalises interleaved RGB pixels in place.
    pub fn apply(&self, pixels: &mut [u8]) {
        match self {
            StainTransform::Macenko(m) => m.apply(pixels),
            StainTransform::Reinhard(t) => t.apply(pixels),
        }
    }
}
