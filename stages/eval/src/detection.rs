//! The three shapes a detection takes on its way from the network to the metric.
//!
//! All coordinates are level-0 pixels of the whole image (not of a tile), `x` to the right and `y`
//! down, as MIDOG.json and the tile inference write them. Millimetres only appear at the file
//! boundary (see `formats`).

use serde::{Deserialize, Serialize};

/// A ground-truth cell position: the centre of an annotated mitotic figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub const fn new(x: f64, y: f64) -> Point {
        Point { x, y }
    }

    /// Squared Euclidean distance; matching compares squared distances so that no square root
    /// rounds a point that lies exactly on the radius to the wrong side.
    pub fn distance_squared(self, other: Point) -> f64 {
        let dx = self.x - other.x;
        let dy = self.y - other.y;
        dx * dx + dy * dy
    }
}

/// A detection reduced to its centre: what centre-distance NMS, matching and the output file see.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Centre, level-0 pixels.
    pub x: f64,
    pub y: f64,
    /// Classifier confidence; higher is more confident. Compared with [`f64::total_cmp`] wherever
    /// detections are ranked, so ordering never depends on input order except as the last tie-break.
    pub score: f64,
}

impl Detection {
    pub const fn new(x: f64, y: f64, score: f64) -> Detection {
        Detection { x, y, score }
    }

    pub const fn point(&self) -> Point {
        Point { x: self.x, y: self.y }
    }
}

/// A box as the detector head emits it for one inference tile, already shifted into image
/// coordinates. `tile` identifies the tile it came from, because IoU NMS runs per tile: the
/// overlap between neighbouring tiles is resolved later by centre-distance NMS over the image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxDetection {
    /// Corners `[x1, y1]` (top left) and `[x2, y2]` (bottom right), level-0 pixels.
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub score: f64,
    pub tile: u32,
}

impl BoxDetection {
    /// The box's centre with its score: the cell position MIDOG scores.
    pub fn centre(&self) -> Detection {
        Detection { x: (self.x1 + self.x2) / 2.0, y: (self.y1 + self.y2) / 2.0, score: self.score }
    }

    /// Area, zero for an empty or inverted box (never negative, so IoU stays within [0, 1]).
    pub fn area(&self) -> f64 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// Intersection over union; 0 when the union is empty, so degenerate boxes suppress nothing.
    pub fn iou(&self, other: &BoxDetection) -> f64 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f64, y1: f64, x2: f64, y2: f64) -> BoxDetection {
        BoxDetection { x1, y1, x2, y2, score: 1.0, tile: 0 }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(b(0.0, 0.0, 10.0, 10.0).iou(&b(0.0, 0.0, 10.0, 10.0)), 1.0);
        assert_eq!(b(0.0, 0.0, 10.0, 10.0).iou(&b(5.0, 0.0, 15.0, 10.0)), 50.0 / 150.0);
        assert_eq!(b(0.0, 0.0, 10.0, 10.0).iou(&b(20.0, 20.0, 30.0, 30.0)), 0.0);
        assert_eq!(b(0.0, 0.0, 0.0, 0.0).iou(&b(0.0, 0.0, 0.0, 0.0)), 0.0);
        assert_eq!(b(10.0, 10.0, 0.0, 0.0).area(), 0.0);
    }

    #[test]
    fn centre_keeps_score() {
        let c = BoxDetection { x1: 100.0, y1: 200.0, x2: 150.0, y2: 250.0, score: 0.7, tile: 3 }.centre();
        assert_eq!(c, Detection::new(125.0, 225.0, 0.7));
    }
}
