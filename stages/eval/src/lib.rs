//! MIDOG 2021 detection evaluation.
//!
//! From the network's boxes to the challenge metric: per-tile IoU NMS and image-level
//! centre-distance NMS (`nms`), the official greedy 7.5 µm point matching (`matching`), counts
//! summed over images and F1 (`metrics`), every threshold at once for the best threshold, the
//! precision–recall curve and average precision (`curve`), the official JSON files (`formats`),
//! scoring of external detection files against ground truth (`external`), the merging of several
//! models' detections (`ensemble`), and bootstrap confidence intervals and paired comparisons of
//! scores (`bootstrap`).

pub mod bootstrap;
pub mod curve;
pub mod detection;
pub mod ensemble;
pub mod error;
pub mod external;
pub mod formats;
mod grid;
pub mod matching;
pub mod metrics;
pub mod nms;
pub mod threshold;

pub use bootstrap::{Bootstrap, Interval, MetricIntervals, NoInterval, PairedDifference};
pub use curve::{CurvePoint, SweepImage, ThresholdCurve};
pub use detection::{BoxDetection, Detection, Point};
pub use error::EvalError;
pub use matching::{DetectionOutcome, ImageMatch, MIDOG_RADIUS_UM, PointMatcher, greedy_match};
pub use metrics::{Counts, ImageResult, by_scanner, summed};
pub use nms::{centre_nms, iou_nms};
pub use threshold::ScoreThreshold;
