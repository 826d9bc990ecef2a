//! The tile_infer stage: the trained model over every validation and test image.

use std::sync::Arc;
use std::time::Instant;

use engine::{StageContext, StageError};
use midog_data::{TiffImage, TileCache};
use stages::artifact::inferred::{InferredImage, InferredImages, Role};
use stages::artifact::tables::{CANDIDATES_FILE, Candidates};
use stages::artifact::{DatasetManifest, SplitSets};
use torch_stage_defs::device::loader_threads;
use torch_stage_defs::tile_infer::{CheckpointChoice, TileInferParams};

use crate::device;
use crate::stain_norm::StainReference;
use crate::tile_grid::TileGrid;
use crate::tiled::TiledDetector;

pub fn run(p: &TileInferParams, ctx: &StageContext) -> Result<(), StageError> {
    let device = device::resolve(&p.device, &ctx.devices).map_err(StageError::msg)?;
    tch::set_num_threads(ctx.threads as i32);
    let train = ctx.input("train")?;
    let file = match p.checkpoint {
        CheckpointChoice::Best => "best.safetensors",
        CheckpointChoice::Last => "last.safetensors",
    };
    let checkpoint = train.dir.join("checkpoints").join(file);
    let (vs, net) = midog_model::load_detector(&checkpoint, device).map_err(StageError::domain)?;
    // The stain normalisation the model was trained with (it travels in the checkpoint).
    let stain = StainReference::of_checkpoint(&checkpoint)?;
    let channels_last = device.is_cuda();
    if channels_last {
        midog_model::precision::to_channels_last(&vs);
    }
    let split = SplitSets::load(ctx.ancestor("split")?)?;
    let dataset = DatasetManifest::load(ctx.ancestor("dataset")?)?;
    let images: Vec<(u32, Role)> =
        split.val.iter().map(|&i| (i, Role::Val)).chain(split.test.iter().map(|&i| (i, Role::Test))).collect();
    let threads = loader_threads(p.loader_threads, ctx.threads, device.is_cuda());
    let detector = TiledDetector {
        net: net.as_ref(),
        device,
        precision: p.precision,
        tile: p.tile_size,
        overlap: p.overlap,
        batch_size: p.batch_size,
        min_score: p.min_score,
        threads,
        channels_last,
    };
    let total_tiles: usize = images
        .iter()
        .map(|(id, _)| {
            dataset.image(*id).map(|i| TileGrid::new(i.width, i.height, p.tile_size, p.overlap).len()).unwrap_or(0)
        })
        .sum();
    ctx.progress().start(total_tiles as u64, "inferring tiles");
    let cache = Arc::new(TileCache::new(128 << 20));
    let mut candidates = Candidates::default();
    let mut inferred = Vec::new();
    let mut done_before = 0u64;
    for (id, role) in images {
        let img = dataset.image(id)?;
        let start = Instant::now();
        let tiff =
            Arc::new(TiffImage::open_with_cache(dataset.path_of(img), cache.clone()).map_err(StageError::domain)?);
        let progress = ctx.progress();
        let normalise = match &stain {
            Some(r) => r.transform(&dataset.path_of(img), "tile_infer (the train stage's stain_norm)")?,
            None => None,
        };
        let found = detector
            .detect_normalised(&tiff, normalise.as_ref(), &mut |done| {
                progress.set(done_before + done as u64);
                !ctx.is_cancelled()
            })
            .map_err(|e| {
                if ctx.is_cancelled() {
                    StageError::Cancelled
                } else {
                    StageError::msg(format!("{}: {e}", img.file_name))
                }
            })?;
        let tiles = TileGrid::new(img.width, img.height, p.tile_size, p.overlap).len();
        done_before += tiles as u64;
        for c in &found {
            candidates.push(id, c.tile, c.b, c.score);
        }
        inferred.push(InferredImage::new(img, role, tiles as u32, start.elapsed().as_secs_f64()));
        tracing::info!(
            "{}: {} tiles, {} candidates in {:.2} s",
            img.file_name,
            tiles,
            found.len(),
            start.elapsed().as_secs_f64()
        );
    }
    let secs: f64 = inferred.iter().map(|i| i.seconds).sum();
    ctx.set_summary("images", inferred.len() as u64);
    ctx.set_summary("candidates", candidates.len() as u64);
    ctx.set_summary("seconds_per_image", secs / inferred.len().max(1) as f64);
    candidates.write(&ctx.out_dir().join(CANDIDATES_FILE))?;
    InferredImages { images: inferred }.save(ctx.out_dir())
}
