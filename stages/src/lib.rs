//! The MIDOG mitosis-detection stages and the `pipeline` command.
//!
//! Stage kinds: dataset → split → sample → train → tile_infer → nms → score → report. The kinds
//! that need libtorch (train, tile_infer) are declared here (so planning, keys and `status` work
//! without loading libtorch) and run by the sibling executable `pipeline-torch`. blob_baseline
//! (split → detections, no training) stands in for train → tile_infer → nms to score a
//! non-learned detector the same way.

pub mod artifact;
pub mod baseline;
pub mod cli;
pub mod dataset;
pub mod domain_generalization;
pub mod lr_schedule;
pub mod nms;
pub mod report;
pub mod results;
pub mod sample;
pub mod score;
pub mod split;
pub mod tile_grid;
pub mod tile_infer;
pub mod train;

use engine::Registry;

/// The executable that runs the libtorch stages, next to `pipeline`.
pub const TORCH_WORKER: &str = "pipeline-torch";

/// Every stage kind, with runners for those this binary runs.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<dataset::DatasetStage>(dataset::run)
        .register::<split::SplitStage>(split::run)
        .register::<sample::SampleStage>(sample::run)
        .register::<nms::NmsStage>(nms::run)
        .register::<baseline::BlobBaselineStage>(baseline::run)
        .register::<score::ScoreStage>(score::run)
        .register::<report::ReportStage>(report::run)
        .declare::<train::TrainStage>()
        .declare::<tile_infer::TileInferStage>();
    r
}
