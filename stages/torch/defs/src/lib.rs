//! What the `pipeline` front end knows about the stages `pipeline-torch` runs: their params,
//! versions, docs and resources, without libtorch, so planning, keys, `status` and `pipeline
//! stages` work on any machine. The runners are beside this crate, in `stages/torch/src/`
//! (`train.rs` runs [`train::TrainStage`], `tile_infer.rs` runs [`tile_infer::TileInferStage`]):
//! a change to a runner and the bump of its stage's `VERSION` are one change in one directory.
//!
//! Also the rules both sides share: device requests ([`device`]), the loader-thread rule, and
//! the learning-rate schedules ([`lr_schedule`]).

pub mod device;
pub mod domain_generalization;
pub mod lr_schedule;
pub mod tile_infer;
pub mod train;

/// The executable that runs these stages, next to `pipeline`.
pub const TORCH_WORKER: &str = "pipeline-torch";
