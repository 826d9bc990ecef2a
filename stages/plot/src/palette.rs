//! Colours: matplotlib's `tab10` for series (what readers of pathology-AI papers are used to, and
//! distinguishable in greyscale print), and fixed colours for the kinds of marks on image crops.

use plotters::style::RGBColor;

/// The ten `tab10` colours, cycled by series index.
pub const SERIES: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series `i`.
pub fn series_colour(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// Converts an `[r, g, b]` triple, the form the public API takes colours in.
pub(crate) fn rgb([r, g, b]: [u8; 3]) -> RGBColor {
    RGBColor(r, g, b)
}
