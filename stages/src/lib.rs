//! The MIDOG mitosis-detection stages and the `pipeline` command.
//!
//! Stage kinds: dataset → split → sample → train → tile_infer → nms → score → report. The kinds
//! that need libtorch (train, tile_infer) are declared here from their definitions in
//! `torch-stage-defs` (so planning, keys and `status` work without loading libtorch) and run by
//! the sibling executable `pipeline-torch`. blob_baseline
//! (split → detections, no training) stands in for train → tile_infer → nms to score a
//! non-learned detector the same way; ensemble merges the detections of several models (the
//! same stage in every replicate or fold, or named stages) into one set that scores alike.

pub mod artifact;
pub mod baseline;
pub mod cli;
pub mod comparison;
pub mod dataset;
pub mod dataset_definition;
pub mod ensemble;
pub mod nms;
pub mod report;
pub mod results;
pub mod sample;
pub mod score;
pub mod split;
pub mod uncertainty;

use engine::Registry;

pub use torch_stage_defs::TORCH_WORKER;

/// Every stage kind, with runners for those this binary runs.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<dataset::DatasetStage>(dataset::run)
        .register::<split::SplitStage>(split::run)
        .register::<sample::SampleStage>(sample::run)
        .register::<nms::NmsStage>(nms::run)
        .register::<baseline::BlobBaselineStage>(baseline::run)
        .register::<ensemble::EnsembleStage>(ensemble::run)
        .register::<score::ScoreStage>(score::run)
        .register::<report::ReportStage>(report::run)
        .declare::<torch_stage_defs::train::TrainStage>()
        .declare::<torch_stage_defs::tile_infer::TileInferStage>();
    r
}
