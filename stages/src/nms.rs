//! The nms stage: per-tile IoU NMS, then image-level centre-distance NMS over the tiles'
//! overlaps (the MIDOG reference recipe: IoU 0.4 per tile, then 25 px between centres).

use std::collections::BTreeMap;

use engine::{ParamError, StageContext, StageDef, StageError};
use midog_eval::{BoxDetection, Detection, centre_nms, iou_nms};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::inferred::InferredImages;
use crate::artifact::tables::{CANDIDATES_FILE, Candidates, DETECTIONS_FILE, Detections};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NmsParams {
    /// Per-tile IoU above which the lower-scoring box is dropped.
    pub iou: f64,
    /// Image-level suppression radius between detection centres, in pixels.
    pub radius_px: f64,
    /// Same radius in µm (converted with each image's resolution); overrides `radius_px`.
    pub radius_um: Option<f64>,
}

impl Default for NmsParams {
    fn default() -> Self {
        NmsParams { iou: 0.4, radius_px: 25.0, radius_um: None }
    }
}

pub struct NmsStage;

impl StageDef for NmsStage {
    type Params = NmsParams;
    const KIND: &'static str = "nms";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "per-tile IoU NMS, then image-level centre-distance NMS";
    const NEEDS: &'static [&'static str] = &["tile_infer"];

    fn validate(p: &NmsParams) -> Result<(), ParamError> {
        if !(0.0..=1.0).contains(&p.iou) {
            return Err(ParamError::new(&["iou"], "must be in [0, 1]"));
        }
        if p.radius_px < 0.0 || p.radius_um.is_some_and(|r| r < 0.0) {
            return Err(ParamError::new(&["radius_px"], "radii must not be negative"));
        }
        Ok(())
    }
}

pub fn run(p: &NmsParams, ctx: &StageContext) -> Result<(), StageError> {
    let input = ctx.input("tile_infer")?;
    let images = InferredImages::load(&input.dir)?;
    let candidates = Candidates::read(&input.dir.join(CANDIDATES_FILE))?;
    let mut by_image: BTreeMap<u32, Vec<BoxDetection>> = BTreeMap::new();
    for i in 0..candidates.len() {
        by_image.entry(candidates.image_id[i]).or_default().push(BoxDetection {
            x1: candidates.x1[i],
            y1: candidates.y1[i],
            x2: candidates.x2[i],
            y2: candidates.y2[i],
            score: candidates.score[i],
            tile: candidates.tile[i],
        });
    }
    let mut out = Detections::default();
    for img in &images.images {
        let boxes = by_image.remove(&img.id).unwrap_or_default();
        let radius = p.radius_um.map(|um| um / img.um_per_px).unwrap_or(p.radius_px);
        for d in suppress(&boxes, p.iou, radius) {
            out.push(img.id, d.x, d.y, d.score);
        }
    }
    ctx.set_summary("candidates", candidates.len() as u64);
    ctx.set_summary("detections", out.score.len() as u64);
    images.save(ctx.out_dir())?;
    out.write(&ctx.out_dir().join(DETECTIONS_FILE))
}

/// Both NMS levels for one image; detections come out by descending score.
pub fn suppress(boxes: &[BoxDetection], iou: f64, radius_px: f64) -> Vec<Detection> {
    let per_tile: Vec<Detection> = iou_nms(boxes, iou).into_iter().map(|i| boxes[i].centre()).collect();
    centre_nms(&per_tile, radius_px).into_iter().map(|i| per_tile[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f64, y: f64, score: f64, tile: u32) -> BoxDetection {
        BoxDetection { x1: x - 25.0, y1: y - 25.0, x2: x + 25.0, y2: y + 25.0, score, tile }
    }

    #[test]
    fn duplicates_from_overlapping_tiles_collapse_to_one() {
        // The same cell seen by two tiles (slightly shifted) plus a distinct cell.
        let boxes = [b(100.0, 100.0, 0.9, 0), b(103.0, 98.0, 0.8, 1), b(300.0, 300.0, 0.7, 1)];
        let d = suppress(&boxes, 0.4, 25.0);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].x, d[0].score), (100.0, 0.9));
    }
}
