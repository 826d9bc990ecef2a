//! Stain normalisation in the torch stages: the reference computed from the training images,
//! every image's map onto it, and the reference's place in the checkpoint metadata, so that
//! tile_infer and `pipeline detect` normalise exactly as training did.
//!
//! Per image the statistics come from [`midog_data::stain::sample_image`] (a fixed grid of
//! regions); the reference pools every training image's tissue samples (each thinned to at
//! most [`POOL_PIXELS_PER_IMAGE`] pixels, so every image weighs about the same).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use engine::StageError;
use midog_data::TiffImage;
use midog_data::stain::{StainError, StainMethod, StainStats, StainTransform, sample_image};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Checkpoint metadata key of the reference.
pub const METADATA_KEY: &str = "midog.stain_normalization";
/// Sampled pixels each training image contributes to the pooled reference at most.
pub const POOL_PIXELS_PER_IMAGE: usize = 65_536;

/// What a checkpoint carries: the method and the reference statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StainReference {
    pub method: StainMethod,
    pub reference: StainStats,
    /// Training images the reference pools.
    pub images: usize,
}

/// Where a stain problem came from, for the message: "the train stage's `stain_norm`" or "the
/// checkpoint's stain normalisation".
fn no_tissue(path: &Path, what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::msg(format!(
        "{what}: {}: {e}. Leave images without tissue out of the dataset, or turn stain normalisation off",
        path.display()
    ))
}

fn sample(path: &Path) -> Result<Vec<u8>, StageError> {
    let image = TiffImage::open(path).map_err(StageError::domain)?;
    sample_image(&image).map_err(StageError::domain)
}

/// The statistics of one image file.
pub fn image_stats(path: &Path, method: StainMethod, what: &str) -> Result<StainStats, StageError> {
    StainStats::estimate(method, &sample(path)?).map_err(|e| no_tissue(path, what, e))
}

/// The statistics of one image file, `None` when it has too little tissue to estimate stains
/// from (a region of glass: there is nothing to normalise).
fn tissue_stats(path: &Path, method: StainMethod, what: &str) -> Result<Option<StainStats>, StageError> {
    match StainStats::estimate(method, &sample(path)?) {
        Ok(stats) => Ok(Some(stats)),
        Err(StainError::NoTissue { .. }) => Ok(None),
        Err(e) => Err(no_tissue(path, what, e)),
    }
}

/// The reference of the training images `paths`, in parallel. Images without tissue stay out of
/// it (with a warning naming them); none with tissue is an error naming the first.
pub fn reference(paths: &[PathBuf], method: StainMethod, what: &str) -> Result<StainReference, StageError> {
    let samples: Vec<Option<Vec<u8>>> = paths
        .par_iter()
        .map(|p| {
            let s = sample(p)?;
            match StainStats::estimate(method, &s) {
                Ok(_) => {}
                Err(StainError::NoTissue { .. }) => return Ok(None),
                Err(e) => return Err(no_tissue(p, what, e)),
            }
            let n = s.len() / 3;
            let stride = n.div_ceil(POOL_PIXELS_PER_IMAGE).max(1);
            Ok(Some(s.chunks_exact(3).step_by(stride).flatten().copied().collect()))
        })
        .collect::<Result<_, StageError>>()?;
    let glass: Vec<&PathBuf> = paths.iter().zip(&samples).filter(|(_, s)| s.is_none()).map(|(p, _)| p).collect();
    if glass.len() == paths.len() {
        let first = paths.first().ok_or_else(|| StageError::msg(format!("{what}: no training images")))?;
        return Err(image_stats(first, method, what).err().unwrap_or_else(|| {
            StageError::msg(format!("{what}: no training image has tissue to take a reference from"))
        }));
    }
    if !glass.is_empty() {
        tracing::warn!("{what}: {}", without_tissue(&glass, "left out of the reference"));
    }
    let pooled: Vec<u8> = samples.into_iter().flatten().flatten().collect();
    let reference = StainStats::estimate(method, &pooled)
        .map_err(|e| StageError::msg(format!("{what}: the pooled training images: {e}")))?;
    Ok(StainReference { method, reference, images: paths.len() - glass.len() })
}

/// "N images have too little tissue to estimate stains from (a, b, …): WHAT".
fn without_tissue(paths: &[&PathBuf], what: &str) -> String {
    let names: Vec<String> = paths.iter().take(5).map(|p| p.display().to_string()).collect();
    let more = if paths.len() > 5 { format!(" and {} more", paths.len() - 5) } else { String::new() };
    format!(
        "{} image{} too little tissue to estimate stains from ({}{more}): {what}",
        paths.len(),
        if paths.len() == 1 { " has" } else { "s have" },
        names.join(", ")
    )
}

impl StainReference {
    /// Each image's map onto the reference, in parallel; `None` for an image without tissue,
    /// which is left as it is (with one warning naming such images).
    pub fn transforms(&self, paths: &[PathBuf], what: &str) -> Result<Vec<Option<StainTransform>>, StageError> {
        let maps: Vec<Option<StainTransform>> =
            paths.par_iter().map(|p| self.transform_quietly(p, what)).collect::<Result<_, _>>()?;
        let glass: Vec<&PathBuf> = paths.iter().zip(&maps).filter(|(_, m)| m.is_none()).map(|(p, _)| p).collect();
        if !glass.is_empty() {
            tracing::warn!("{what}: {}", without_tissue(&glass, "not normalised"));
        }
        Ok(maps)
    }

    /// One image's map onto the reference; `None` (with a warning) for an image without tissue.
    pub fn transform(&self, path: &Path, what: &str) -> Result<Option<StainTransform>, StageError> {
        let map = self.transform_quietly(path, what)?;
        if map.is_none() {
            tracing::warn!("{what}: {}", without_tissue(&[&path.to_path_buf()], "not normalised"));
        }
        Ok(map)
    }

    fn transform_quietly(&self, path: &Path, what: &str) -> Result<Option<StainTransform>, StageError> {
        let Some(stats) = tissue_stats(path, self.method, what)? else { return Ok(None) };
        StainTransform::between(&stats, &self.reference).map(Some).map_err(StageError::domain)
    }

    pub fn metadata(&self) -> Result<HashMap<String, String>, StageError> {
        let json = serde_json::to_string(self).map_err(|e| StageError::msg(e.to_string()))?;
        Ok(HashMap::from([(METADATA_KEY.to_string(), json)]))
    }

    /// The reference a checkpoint carries (None: trained without stain normalisation).
    pub fn from_metadata(
        path: &Path,
        metadata: &HashMap<String, String>,
    ) -> Result<Option<StainReference>, StageError> {
        metadata
            .get(METADATA_KEY)
            .map(|json| {
                serde_json::from_str(json).map_err(|e| {
                    StageError::msg(format!("{}: unreadable stain normalisation metadata: {e}", path.display()))
                })
            })
            .transpose()
    }

    /// The reference of a checkpoint file.
    pub fn of_checkpoint(path: &Path) -> Result<Option<StainReference>, StageError> {
        let (_, metadata) = midog_model::weights::read_safetensors(path).map_err(StageError::domain)?;
        StainReference::from_metadata(path, &metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midog_synth::tiff_writer::{TiffLayout, write_tiled_tiff};
    use midog_synth::{Compression, ImageScene, SynthConfig, plan_images};

    /// An uncompressed 512 × 512 TIFF of one colour.
    fn flat_tiff(path: &Path, rgb: [u8; 3]) {
        let layout = TiffLayout {
            width: 512,
            height: 512,
            tile_size: 256,
            um_per_px: 0.25,
            compression: Compression::None,
            description: "flat".into(),
            software: "test".into(),
        };
        let tile: Vec<u8> = (0..256 * 256).flat_map(|_| rgb).collect();
        write_tiled_tiff(path, &layout, &vec![tile; 4]).unwrap();
    }

    /// A synthetic H&E image of scanner `name`.
    fn synthetic(dir: &Path, name: &str) -> PathBuf {
        let cfg = SynthConfig { scale: 0.08, density: 40.0, scanners: vec![name.into()], ..SynthConfig::default() };
        let plan = &plan_images(&cfg.profiles().unwrap(), 1, cfg.scale, 3, cfg.density)[0];
        let path = dir.join(format!("{name}.tiff"));
        let layout = TiffLayout {
            width: plan.width,
            height: plan.height,
            tile_size: 256,
            um_per_px: plan.scanner.um_per_px,
            compression: Compression::None,
            description: name.into(),
            software: "test".into(),
        };
        let tiles = midog_synth::dataset::render_tiles(&ImageScene::build(plan), 256, Compression::None).unwrap();
        write_tiled_tiff(&path, &layout, &tiles).unwrap();
        path
    }

    #[test]
    fn images_without_tissue_stay_out_of_the_reference_and_only_all_glass_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let glass = dir.path().join("glass.tiff");
        flat_tiff(&glass, [246, 244, 247]);
        let tissue = synthetic(dir.path(), "XR");
        for method in [StainMethod::Macenko, StainMethod::Reinhard] {
            let what = "stages.train.stain_norm = \"macenko\"";
            // A region of glass among the training images: left out, the reference is the tissue's.
            let with_glass = reference(&[tissue.clone(), glass.clone()], method, what).unwrap();
            let alone = reference(std::slice::from_ref(&tissue), method, what).unwrap();
            assert_eq!(with_glass.reference, alone.reference);
            assert_eq!(with_glass.images, 1);
            // Nothing to normalise on glass: the image stays as it is.
            assert!(alone.transform(&glass, "tile_infer").unwrap().is_none());
            let maps = alone.transforms(&[tissue.clone(), glass.clone()], "tile_infer").unwrap();
            assert!(maps[0].is_some() && maps[1].is_none());
            // No training image with tissue: an error naming the file and the key.
            let e = reference(std::slice::from_ref(&glass), method, what).unwrap_err().to_string();
            assert!(e.contains("glass.tiff") && e.contains("no tissue") && e.contains("stain_norm"), "{e}");
        }
    }

    #[test]
    fn the_reference_travels_in_checkpoint_metadata_and_maps_scanners_together() {
        let dir = tempfile::tempdir().unwrap();
        let (xr, gt450) = (synthetic(dir.path(), "XR"), synthetic(dir.path(), "GT450"));
        let r = reference(std::slice::from_ref(&xr), StainMethod::Macenko, "test").unwrap();
        let meta = r.metadata().unwrap();
        assert_eq!(StainReference::from_metadata(&xr, &meta).unwrap(), Some(r.clone()));
        assert_eq!(StainReference::from_metadata(&xr, &HashMap::new()).unwrap(), None);
        // GT450 normalised onto the XR reference has XR-like stains.
        let mut pixels = sample(&gt450).unwrap();
        r.transform(&gt450, "test").unwrap().unwrap().apply(&mut pixels);
        let after = StainStats::estimate(StainMethod::Macenko, &pixels).unwrap();
        let (StainStats::Macenko(after), StainStats::Macenko(reference)) = (after, &r.reference) else {
            unreachable!()
        };
        let before = match image_stats(&gt450, StainMethod::Macenko, "test").unwrap() {
            StainStats::Macenko(m) => m,
            _ => unreachable!(),
        };
        let angle =
            |a: [f64; 3], b: [f64; 3]| (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).clamp(-1.0, 1.0).acos().to_degrees();
        let (gap_before, gap_after) =
            (angle(before.hematoxylin, reference.hematoxylin), angle(after.hematoxylin, reference.hematoxylin));
        assert!(
            gap_after < gap_before / 2.0 + 0.5,
            "haematoxylin {gap_before:.1}° → {gap_after:.1}° from the reference"
        );
    }
}
