//! Line charts: several named series of (x, y) points, e.g. F1 against threshold per variant,
//! precision against recall, or training loss against step on a log axis.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::axis_range::{linear_extent, log_extent};
use crate::error::PlotError;
use crate::font::{self, FAMILY};
use crate::legend::LegendPosition;
use crate::output::{check_png_target, draw_error, write_png};
use crate::palette::series_colour;

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Drawn in the given order; points with a non-finite coordinate (or x ≤ 0 on a log axis) are
    /// skipped, the line joining their neighbours.
    pub points: Vec<(f64, f64)>,
}

/// A line chart, built with chained setters and written with [`LineChart::save_png`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
    log_x: bool,
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
    markers: bool,
    legend: LegendPosition,
}

impl LineChart {
    pub fn new(title: impl Into<String>) -> LineChart {
        LineChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            log_x: false,
            x_range: None,
            y_range: None,
            markers: false,
            legend: LegendPosition::default(),
        }
    }

    pub fn x_label(mut self, label: impl Into<String>) -> LineChart {
        self.x_label = label.into();
        self
    }

    pub fn y_label(mut self, label: impl Into<String>) -> LineChart {
        self.y_label = label.into();
        self
    }

    /// A logarithmic x axis (learning rates, steps, radii over decades).
    pub fn log_x(mut self, on: bool) -> LineChart {
        self.log_x = on;
        self
    }

    /// Fixes the x extent; an empty, non-finite (or, on a log axis, non-positive) range is ignored
    /// and the extent comes from the data.
    pub fn x_range(mut self, lo: f64, hi: f64) -> LineChart {
        self.x_range = Some((lo, hi));
        self
    }

    /// Fixes the y extent, e.g. `[0, 1]` for scores so that charts compare at a glance.
    pub fn y_range(mut self, lo: f64, hi: f64) -> LineChart {
        self.y_range = Some((lo, hi));
        self
    }

    /// Draws a dot at every point as well as the line (for sparse series).
    pub fn markers(mut self, on: bool) -> LineChart {
        self.markers = on;
        self
    }

    pub fn legend(mut self, position: LegendPosition) -> LineChart {
        self.legend = position;
        self
    }

    /// Adds a series; colours follow the order series are added in.
    pub fn series(mut self, name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> LineChart {
        self.series.push(Series { name: name.into(), points: points.into_iter().collect() });
        self
    }

    /// Renders the chart to a `width` × `height` PNG at `path`.
    pub fn save_png(&self, path: impl AsRef<Path>, width: u32, height: u32) -> Result<(), PlotError> {
        let path = path.as_ref();
        check_png_target(path, width, height)?;
        font::ensure_registered()?;
        let mut rgb = vec![255u8; width as usize * height as usize * 3];
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let xs = self.visible_points().map(|(x, _)| x);
        let ys = self.visible_points().map(|(_, y)| y);
        let y = usable(self.y_range, false).unwrap_or_else(|| linear_extent(ys));
        let drawn = if self.log_x {
            let x = usable(self.x_range, true).unwrap_or_else(|| log_extent(xs));
            self.draw(&root, (x.0..x.1).log_scale(), y.0..y.1)
        } else {
            let x = usable(self.x_range, false).unwrap_or_else(|| linear_extent(xs));
            self.draw(&root, x.0..x.1, y.0..y.1)
        };
        drawn.map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
        drop(root);
        write_png(path, width, height, &rgb)
    }

    fn keeps(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0)
    }

    fn visible_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series.iter().flat_map(|s| s.points.iter().copied()).filter(|&p| self.keeps(p))
    }

    fn draw<DB: DrawingBackend, X>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x: X,
        y: Range<f64>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        for (i, s) in self.series.iter().enumerate() {
            let colour = series_colour(i);
            let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|&p| self.keeps(p)).collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(2)));
            if self.markers {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
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

/// A caller's range if it can be drawn.
fn usable(range: Option<(f64, f64)>, log: bool) -> Option<(f64, f64)> {
    range.filter(|&(lo, hi)| lo.is_finite() && hi.is_finite() && lo < hi && (!log || lo > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_png::{count_colour, read_png};

    #[test]
    fn renders_series_legend_and_log_axis() {
        let dir = tempfile::tempdir().unwrap();
        let f1 =
            |shift: f64| (0..=50).map(move |i| (i as f64 / 50.0, (1.0 - (i as f64 / 50.0 - shift).powi(2)).max(0.0)));
        let path = dir.path().join("f1.png");
        LineChart::new("F1 vs threshold")
            .x_label("threshold")
            .y_label("F1")
            .y_range(0.0, 1.0)
            .series("baseline", f1(0.6))
            .series("radius 15 µm", f1(0.4))
            .legend(LegendPosition::LowerLeft)
            .save_png(&path, 640, 480)
            .unwrap();
        let img = read_png(&path);
        assert_eq!((img.width, img.height), (640, 480));
        assert!(count_colour(&img, series_colour(0)) > 200, "first series drawn");
        assert!(count_colour(&img, series_colour(1)) > 200, "second series drawn");

        let path = dir.path().join("loss.png");
        LineChart::new("loss")
            .log_x(true)
            .markers(true)
            .series("train", (0..100).map(|i| (i as f64, 1.0 / (1.0 + i as f64))))
            .save_png(&path, 500, 300)
            .unwrap();
        let img = read_png(&path);
        assert_eq!((img.width, img.height), (500, 300));
        assert!(count_colour(&img, series_colour(0)) > 100);
    }

    #[test]
    fn empty_chart_and_bad_targets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        LineChart::new("nothing yet").series("nan", [(f64::NAN, 1.0)]).save_png(&path, 200, 150).unwrap();
        assert_eq!(read_png(&path).width, 200);
        let e = LineChart::new("x").save_png(dir.path().join("chart.jpg"), 200, 150).unwrap_err();
        assert!(matches!(e, PlotError::NotPng { .. }), "{e}");
        let e = LineChart::new("x").save_png(dir.path().join("chart.png"), 0, 150).unwrap_err();
        assert!(e.to_string().contains("chart.png"), "{e}");
        let e = LineChart::new("x").save_png(dir.path().join("no/such/dir/chart.png"), 100, 100).unwrap_err();
        assert!(e.to_string().contains("chart.png"), "{e}");
    }
}
