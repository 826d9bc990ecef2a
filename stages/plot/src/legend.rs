//! Where a chart's legend goes, in our own type so callers need not depend on plotters.

use plotters::chart::SeriesLabelPosition;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegendPosition {
    #[default]
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    /// No legend (e.g. a single series named by the title).
    Hidden,
}

impl LegendPosition {
    pub(crate) fn to_plotters(self) -> Option<SeriesLabelPosition> {
        match self {
            LegendPosition::UpperRight => Some(SeriesLabelPosition::UpperRight),
            LegendPosition::UpperLeft => Some(SeriesLabelPosition::UpperLeft),
            LegendPosition::LowerRight => Some(SeriesLabelPosition::LowerRight),
            LegendPosition::LowerLeft => Some(SeriesLabelPosition::LowerLeft),
            LegendPosition::Hidden => None,
        }
    }
}
