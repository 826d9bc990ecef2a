//! PNG charts and annotated image crops for experiment reports, drawn with plotters' bitmap
//! backend and a bundled font, so a report looks the same on a laptop and on a bare cluster node.
//!
//! - [`LineChart`]: named (x, y) series, optional log x, legend: F1 vs threshold,
//!   precision–recall, loss curves.
//! - [`BarChart`]: grouped bars, groups × series: F1 per scanner per variant.
//! - [`AnnotatedImage`]: boxes, circles and labels on RGB8 crops, galleries of crops, with
//!   [`MarkKind`] colours for ground truth, true positives, false positives and misses.

mod annotated_image;
mod axis_range;
mod bar_chart;
mod error;
mod font;
mod group_axis;
mod legend;
mod line_chart;
mod output;
pub mod palette;
#[cfg(test)]
mod test_png;

pub use annotated_image::{AnnotatedImage, MarkKind};
pub use bar_chart::BarChart;
pub use error::PlotError;
pub use legend::LegendPosition;
pub use line_chart::{LineChart, Series};
