//! The tile_infer stage's definition: the trained model over every validation and test image in
//! overlapping tiles, keeping every candidate above `min_score` with its tile. Runs in
//! `pipeline-torch`.

use engine::{ParamError, Resources, StageDef};
use midog_model_config::Precision;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointChoice {
    /// The checkpoint with the best validation F1.
    Best,
    /// The last epoch's.
    Last,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TileInferParams {
    /// Tile side in pixels (a multiple of 32).
    pub tile_size: u32,
    /// Overlap between neighbouring tiles: a fraction of the tile (< 1) or pixels (≥ 1).
    pub overlap: f64,
    /// Keep candidates scoring above this.
    pub min_score: f64,
    /// Tiles per forward pass.
    pub batch_size: usize,
    /// "fp32" or "bf16".
    pub precision: Precision,
    pub checkpoint: CheckpointChoice,
    /// "auto", "cpu", "cuda" or "cuda:N". Not part of the key.
    pub device: String,
    /// Tile-decoding threads (0: automatic). Not part of the key.
    pub loader_threads: usize,
}

impl Default for TileInferParams {
    fn default() -> Self {
        TileInferParams {
            tile_size: 512,
            overlap: 0.1,
            min_score: 0.05,
            batch_size: 8,
            precision: Precision::Fp32,
            checkpoint: CheckpointChoice::Best,
            device: "auto".into(),
            loader_threads: 0,
        }
    }
}

pub struct TileInferStage;

impl StageDef for TileInferStage {
    type Params = TileInferParams;
    const KIND: &'static str = "tile_infer";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "runs the trained model over whole validation and test images in overlapping tiles";
    const NEEDS: &'static [&'static str] = &["train"];
    const WORKER: Option<&'static str> = Some(crate::TORCH_WORKER);
    const NON_KEY_PARAMS: &'static [&'static str] = &["device", "loader_threads"];

    fn validate(p: &TileInferParams) -> Result<(), ParamError> {
        if p.tile_size < 64 || !p.tile_size.is_multiple_of(32) {
            return Err(ParamError::new(&["tile_size"], "must be a multiple of 32, at least 64"));
        }
        if p.overlap < 0.0 || (p.overlap >= 1.0 && p.overlap >= p.tile_size as f64) {
            return Err(ParamError::new(&["overlap"], "a fraction in [0, 1) or a pixel count below tile_size"));
        }
        if p.batch_size == 0 {
            return Err(ParamError::new(&["batch_size"], "must be at least 1"));
        }
        if p.precision == Precision::Fp16 {
            return Err(ParamError::new(&["precision"], "inference supports \"fp32\" and \"bf16\""));
        }
        crate::device::parse_device(&p.device).map_err(|e| ParamError::new(&["device"], e))?;
        Ok(())
    }

    fn resources(_p: &TileInferParams) -> Resources {
        Resources { cpus: 0, gpus: 1, memory_mb: 8192 }
    }
}
