//! What a special cell (mitotic figure or look-alike) contributes to the image: the changes to
//! its surroundings, drawn first, and its chromatin, drawn over them.

use crate::nucleus::{Blob, Patch};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellDrawing {
    /// Halos and cytoplasm, drawn before any chromatin.
    pub patches: Vec<Patch>,
    pub blobs: Vec<Blob>,
    /// Radius (px) within which ordinary nuclei are left out to make room for the cell.
    pub clearance_px: f32,
}

impl CellDrawing {
    /// Largest distance from (cx, cy) that any part reaches (px).
    pub fn reach_from(&self, cx: f32, cy: f32) -> f32 {
        let b = self.blobs.iter().map(|b| ((b.cx - cx).hypot(b.cy - cy)) + b.reach());
        let p = self.patches.iter().map(|p| ((p.cx - cx).hypot(p.cy - cy)) + p.reach());
        b.chain(p).fold(self.clearance_px, f32::max)
    }
}

/// Shared description of the chromatin to draw: where, how dark, how much.
#[derive(Debug, Clone, Copy)]
pub struct CellSpec {
    pub cx: f32,
    pub cy: f32,
    /// Pixels per micrometre.
    pub px_per_um: f32,
    /// Haematoxylin of the condensed chromatin.
    pub darkness: f32,
    /// Dark chromatin area to draw in µm².
    pub area_um2: f32,
}

impl CellDrawing {
    /// Moves every primitive by (dx, dy) pixels.
    pub fn translate(&mut self, dx: f32, dy: f32) {
        for b in &mut self.blobs {
            b.cx += dx;
            b.cy += dy;
        }
        for p in &mut self.patches {
            p.cx += dx;
            p.cy += dy;
        }
    }
}
