//! `pipeline bench loader`: augmented patches per second at several thread counts, on the same
//! random patch plan, each run with a fresh (cold) tile cache and the files in the page cache.
//! `bench/openslide_loader.py` measures the openslide-python + numpy baseline the same way.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::batch::{LoaderImage, PatchSpec};
use super::config::{AugmentConfig, LoaderConfig};
use super::patch_loader::{DEFAULT_LOADER_CACHE_BYTES, PatchLoader};
use crate::error::DataError;
use crate::tiff::{TiffImage, TileCache};

#[derive(Debug, Clone, PartialEq)]
pub struct LoaderBenchConfig {
    pub patch_size: u32,
    pub batch_size: usize,
    pub batches: usize,
    /// One run per entry.
    pub threads: Vec<usize>,
    pub seed: u64,
    pub augment: AugmentConfig,
    pub prefetch_batches: usize,
    pub cache_bytes: usize,
}

impl Default for LoaderBenchConfig {
    fn default() -> Self {
        LoaderBenchConfig {
            patch_size: 512,
            batch_size: 12,
            batches: 50,
            threads: vec![1, 2],
            seed: 0,
            augment: AugmentConfig::STANDARD,
            prefetch_batches: 4,
            cache_bytes: DEFAULT_LOADER_CACHE_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoaderBenchResult {
    pub threads: usize,
    pub patches: usize,
    pub seconds: f64,
    pub patches_per_s: f64,
    pub patches_per_s_per_thread: f64,
    pub cache_hit_rate: f64,
}

impl fmt::Display for LoaderBenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} thread(s): {} patches in {:.2} s = {:.1} patches/s ({:.1} per thread), tile cache hit rate {:.0} %",
            self.threads,
            self.patches,
            self.seconds,
            self.patches_per_s,
            self.patches_per_s_per_thread,
            self.cache_hit_rate * 100.0
        )
    }
}

/// `batches` × `batch_size` patch corners drawn uniformly so that patches lie inside their
/// image (`sizes` are level-0 width and height), images drawn uniformly too.
pub fn random_patch_plan(
    sizes: &[(u32, u32)],
    batches: usize,
    batch_size: usize,
    patch_size: u32,
    seed: u64,
) -> Vec<Vec<PatchSpec>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if sizes.is_empty() {
        return vec![Vec::new(); batches];
    }
    (0..batches)
        .map(|_| {
            (0..batch_size)
                .map(|_| {
                    let image = rng.random_range(0..sizes.len());
                    let (w, h) = sizes[image];
                    let x = rng.random_range(0..=w.saturating_sub(patch_size));
                    let y = rng.random_range(0..=h.saturating_sub(patch_size));
                    PatchSpec { image, x: i64::from(x), y: i64::from(y) }
                })
                .collect()
        })
        .collect()
}

/// Runs the loader over a random plan on `paths` once per thread count.
pub fn bench_loader(paths: &[PathBuf], config: &LoaderBenchConfig) -> Result<Vec<LoaderBenchResult>, DataError> {
    let mut sizes = Vec::with_capacity(paths.len());
    for path in paths {
        let image = TiffImage::open(path)?;
        sizes.push((image.width(), image.height()));
        warm_page_cache(path)?;
    }
    let plan = random_patch_plan(&sizes, config.batches, config.batch_size, config.patch_size, config.seed);
    let images: Vec<LoaderImage> =
        paths.iter().map(|p| LoaderImage { path: p.clone(), boxes: Vec::new(), stain: None }).collect();
    let patches: usize = plan.iter().map(Vec::len).sum();
    let mut results = Vec::new();
    for &threads in &config.threads {
        let cache = Arc::new(TileCache::new(config.cache_bytes));
        let loader_config = LoaderConfig {
            patch_size: config.patch_size,
            threads,
            seed: config.seed,
            augment: config.augment,
            prefetch_batches: config.prefetch_batches,
        };
        let start = Instant::now();
        let loader =
            PatchLoader::start_with_cache(images.clone(), plan.clone(), loader_config, Arc::clone(&cache), |n| {
                vec![0u8; n]
            })?;
        for batch in loader {
            std::hint::black_box(batch?.pixels);
        }
        let seconds = start.elapsed().as_secs_f64();
        let threads = threads.max(1);
        results.push(LoaderBenchResult {
            threads,
            patches,
            seconds,
            patches_per_s: patches as f64 / seconds,
            patches_per_s_per_thread: patches as f64 / seconds / threads as f64,
            cache_hit_rate: cache.stats().hit_rate(),
        });
    }
    Ok(results)
}

/// Reads the file once so that every run (and the Python baseline) starts from the page cache.
fn warm_page_cache(path: &std::path::Path) -> Result<(), DataError> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    while file.read(&mut buf).map_err(|e| DataError::io(path, e))? > 0 {}
    Ok(())
}
