//! Which detections take part in scoring.
//!
//! The official MIDOG 2021 evaluation applies no threshold: participants threshold before writing
//! their output ("We expect you to perform thresholding for your predictions. For evaluation, no
//! additional thresholding will be performed", reference docker). The reference algorithm keeps a
//! detection when its score is strictly greater than the threshold (`clas_pred > detect_thresh`
//! in its `process_output`, 0.64 chosen on validation). [`ScoreThreshold`] encodes exactly these
//! two cases, so "no threshold" cannot be confused with a threshold of 0.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreThreshold {
    /// Every detection counts, as in the official evaluation.
    #[default]
    KeepAll,
    /// A detection counts when `score > t` (strictly), as in the reference algorithm.
    Above(f64),
}

impl ScoreThreshold {
    /// Whether a detection with this score takes part. A NaN score never passes a threshold.
    pub fn keeps(self, score: f64) -> bool {
        match self {
            ScoreThreshold::KeepAll => true,
            ScoreThreshold::Above(t) => score > t,
        }
    }

    /// The threshold value, `None` for [`ScoreThreshold::KeepAll`].
    pub fn value(self) -> Option<f64> {
        match self {
            ScoreThreshold::KeepAll => None,
            ScoreThreshold::Above(t) => Some(t),
        }
    }
}

impl From<Option<f64>> for ScoreThreshold {
    fn from(t: Option<f64>) -> ScoreThreshold {
        t.map_or(ScoreThreshold::KeepAll, ScoreThreshold::Above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_strict() {
        let t = ScoreThreshold::Above(0.64);
        assert!(!t.keeps(0.64));
        assert!(t.keeps(0.640001));
        assert!(!t.keeps(f64::NAN));
        assert!(ScoreThreshold::KeepAll.keeps(-1.0));
        assert_eq!(ScoreThreshold::from(None), ScoreThreshold::KeepAll);
        assert_eq!(ScoreThreshold::from(Some(0.5)).value(), Some(0.5));
    }
}
