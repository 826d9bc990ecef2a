//! Grouped bar charts: groups along x, one bar per series in each group, e.g. F1 per scanner
//! (groups) for each variant of a sweep (series).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::axis_range::bar_extent;
use crate::error::PlotError;
use crate::font::{self, FAMILY};
use crate::group_axis::GroupAxis;
use crate::legend::LegendPosition;
use crate::output::{check_png_target, draw_error, write_png};
use crate::palette::series_colour;

/// Fraction of a group's width its bars take together; the rest separates groups.
const GROUP_FILL: f64 = 0.8;

#[derive(Debug, Clone, PartialEq)]
struct BarSeries {
    name: String,
    values: Vec<f64>,
    /// Error bars `(lo, hi)` per group (`None`: no bar), when the series has them.
    intervals: Option<Vec<Option<(f64, f64)>>>,
    /// Text above each bar instead of its value.
    labels: Option<Vec<String>>,
}

/// A grouped bar chart, built with chained setters and written with [`BarChart::save_png`].
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    title: String,
    x_label: String,
    y_label: String,
    groups: Vec<String>,
    series: Vec<BarSeries>,
    y_range: Option<(f64, f64)>,
    value_decimals: Option<usize>,
    legend: LegendPosition,
}

impl BarChart {
    /// A chart with these group names along x, in this order.
    pub fn new(title: impl Into<String>, groups: impl IntoIterator<Item = impl Into<String>>) -> BarChart {
        BarChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            groups: groups.into_iter().map(Into::into).collect(),
            series: Vec::new(),
            y_range: None,
            value_decimals: None,
            legend: LegendPosition::default(),
        }
    }

    pub fn x_label(mut self, label: impl Into<String>) -> BarChart {
        self.x_label = label.into();
        self
    }

    pub fn y_label(mut self, label: impl Into<String>) -> BarChart {
        self.y_label = label.into();
        self
    }

    /// Fixes the y extent (e.g. `[0, 1]` for F1); an empty or non-finite range is ignored.
    pub fn y_range(mut self, lo: f64, hi: f64) -> BarChart {
        self.y_range = Some((lo, hi));
        self
    }

    /// Writes each bar's value above it with this many decimals.
    pub fn value_labels(mut self, decimals: usize) -> BarChart {
        self.value_decimals = Some(decimals);
        self
    }

    pub fn legend(mut self, position: LegendPosition) -> BarChart {
        self.legend = position;
        self
    }

    /// Adds a series with one value per group (a non-finite value leaves its bar out). The
    /// number of values is checked by [`BarChart::save_png`].
    pub fn series(mut self, name: impl Into<String>, values: impl IntoIterator<Item = f64>) -> BarChart {
        self.series.push(BarSeries {
            name: name.into(),
            values: values.into_iter().collect(),
            intervals: None,
            labels: None,
        });
        self
    }

    /// Error bars (e.g. a confidence interval) for the series added last: one `(lo, hi)` or
    /// `None` per group, drawn as a whisker with caps through the bar's centre.
    pub fn intervals(mut self, intervals: impl IntoIterator<Item = Option<(f64, f64)>>) -> BarChart {
        if let Some(s) = self.series.last_mut() {
            s.intervals = Some(intervals.into_iter().collect());
        }
        self
    }

    /// Texts written above the bars of the series added last, instead of their values (e.g. a
    /// value with a mark); needs [`BarChart::value_labels`] on.
    pub fn labels(mut self, labels: impl IntoIterator<Item = impl Into<String>>) -> BarChart {
        if let Some(s) = self.series.last_mut() {
            s.labels = Some(labels.into_iter().map(Into::into).collect());
        }
        self
    }

    /// Renders the chart to a `width` × `height` PNG at `path`.
    pub fn save_png(&self, path: impl AsRef<Path>, width: u32, height: u32) -> Result<(), PlotError> {
        let path = path.as_ref();
        for s in &self.series {
            let lengths = [Some(s.values.len()), s.intervals.as_ref().map(Vec::len), s.labels.as_ref().map(Vec::len)];
            if let Some(got) = lengths.into_iter().flatten().find(|&n| n != self.groups.len()) {
                return Err(PlotError::SeriesLength {
                    title: self.title.clone(),
                    series: s.name.clone(),
                    expected: self.groups.len(),
                    got,
                });
            }
        }
        check_png_target(path, width, height)?;
        font::ensure_registered()?;
        let mut rgb = vec![255u8; width as usize * height as usize * 3];
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        self.draw(&root).map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
        drop(root);
        write_png(path, width, height, &rgb)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let whiskers =
            self.series.iter().flat_map(|s| s.intervals.iter().flatten().flatten().flat_map(|&(a, b)| [a, b]));
        let (y_lo, y_hi) = self
            .y_range
            .filter(|&(lo, hi)| lo.is_finite() && hi.is_finite() && lo < hi)
            .unwrap_or_else(|| bar_extent(self.series.iter().flat_map(|s| s.values.iter().copied()).chain(whiskers)));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(GroupAxis { groups: self.groups.len() }, y_lo..y_hi)?;
        let group_name = |v: &f64| self.groups.get(v.round() as usize).cloned().unwrap_or_default();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(self.groups.len())
            .x_label_formatter(&group_name)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        let slot = GROUP_FILL / self.series.len().max(1) as f64;
        for (j, s) in self.series.iter().enumerate() {
            let colour = series_colour(j);
            let left = |g: usize| g as f64 - GROUP_FILL / 2.0 + j as f64 * slot;
            let bars = s.values.iter().enumerate().filter(|(_, v)| v.is_finite());
            chart
                .draw_series(
                    bars.clone().map(|(g, &v)| Rectangle::new([(left(g), 0.0), (left(g) + slot, v)], colour.filled())),
                )?
                .label(s.name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
            let interval =
                |g: usize| s.intervals.as_ref().and_then(|i| i[g]).filter(|(lo, hi)| lo.is_finite() && hi.is_finite());
            let centre = |g: usize| left(g) + slot / 2.0;
            let cap = slot * 0.2;
            for g in (0..s.values.len()).filter(|&g| s.values[g].is_finite()) {
                if let Some((lo, hi)) = interval(g) {
                    let x = centre(g);
                    let ink = BLACK.mix(0.8).stroke_width(1);
                    chart.draw_series([
                        PathElement::new(vec![(x, lo), (x, hi)], ink),
                        PathElement::new(vec![(x - cap, lo), (x + cap, lo)], ink),
                        PathElement::new(vec![(x - cap, hi), (x + cap, hi)], ink),
                    ])?;
                }
            }
            if let Some(decimals) = self.value_decimals {
                chart.draw_series(bars.map(|(g, &v)| {
                    // Above the whisker when there is one, so the two never overlap.
                    let at = match interval(g) {
                        Some((_, hi)) if v >= 0.0 => hi.max(v),
                        Some((lo, _)) => lo.min(v),
                        None => v,
                    };
                    let anchor = if v >= 0.0 { VPos::Bottom } else { VPos::Top };
                    let style = TextStyle::from((FAMILY, 12).into_font()).pos(Pos::new(HPos::Center, anchor));
                    let text = s.labels.as_ref().map(|l| l[g].clone()).unwrap_or_else(|| format!("{v:.decimals$}"));
                    Text::new(text, (centre(g), at), style)
                }))?;
            }
        }
        if let Some(position) = self.legend.to_plotters()
            && !self.series.is_empty()
        {
            chart
                .configure_series_labels()
                .position(position)
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.5))
                .draw()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_png::{count_colour, read_png};

    #[test]
    fn renders_groups_by_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f1_per_scanner.png");
        BarChart::new("F1 per scanner", ["XR", "S360", "CS2"])
            .y_label("F1")
            .y_range(0.0, 1.0)
            .value_labels(3)
            .series("baseline", [0.71, 0.74, 0.62])
            .series("stain aug", [0.73, 0.75, 0.69])
            .legend(LegendPosition::UpperLeft)
            .save_png(&path, 640, 400)
            .unwrap();
        let img = read_png(&path);
        assert_eq!((img.width, img.height), (640, 400));
        // Bars are large filled areas: thousands of pixels of each series colour.
        assert!(count_colour(&img, series_colour(0)) > 5000);
        assert!(count_colour(&img, series_colour(1)) > 5000);
    }

    #[test]
    fn error_bars_are_drawn_through_the_bars() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.png");
        let whiskers = dir.path().join("whiskers.png");
        let chart = BarChart::new("F1 per scanner", ["XR", "S360"]).y_range(0.0, 1.0).value_labels(2);
        chart.clone().series("a", [0.4, 0.6]).save_png(&plain, 400, 300).unwrap();
        chart
            .series("a", [0.4, 0.6])
            .intervals([Some((0.2, 0.9)), None])
            .labels(["0.40*", "0.60"])
            .save_png(&whiskers, 400, 300)
            .unwrap();
        let dark = |p: &std::path::Path| {
            let img = read_png(p);
            img.rgb.chunks_exact(3).filter(|px| px.iter().all(|&c| c < 90)).count()
        };
        // The whisker adds a vertical line of dark pixels the plain chart does not have.
        assert!(dark(&whiskers) > dark(&plain) + 100, "{} vs {}", dark(&whiskers), dark(&plain));
        let e = BarChart::new("F1", ["XR", "S360"])
            .series("a", [0.4, 0.6])
            .intervals([None])
            .save_png(dir.path().join("bad.png"), 100, 100)
            .unwrap_err();
        assert!(e.to_string().contains("1 values for 2 groups"), "{e}");
    }

    #[test]
    fn series_must_have_one_value_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let e = BarChart::new("F1", ["XR", "S360"]).series("short", [0.5]).save_png(dir.path().join("x.png"), 100, 100);
        let e = e.unwrap_err().to_string();
        assert!(e.contains("short") && e.contains("1 values for 2 groups"), "{e}");
        // Negative and missing values draw without trouble.
        let path = dir.path().join("neg.png");
        BarChart::new("delta", ["a", "b", "c"]).series("d", [-0.2, f64::NAN, 0.3]).save_png(&path, 300, 200).unwrap();
        assert_eq!(read_png(&path).height, 200);
    }
}
