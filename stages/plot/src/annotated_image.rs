//! Drawing on image crops: boxes, circles and labels on an RGB8 buffer, tiling crops into a
//! gallery, and saving it as PNG. Made for galleries of detection results, where every mark says
//! what it is by colour and shape ([`MarkKind`]).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::PlotError;
use crate::font::{self, FAMILY};
use crate::output::{check_png_target, write_png};
use crate::palette::rgb;

type BitMapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

/// What a mark on a crop means. Ground truth and misses are circles (cells an expert marked);
/// detections are squares (what the model said). The colours stay readable on H&E pink and purple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkKind {
    /// An annotated mitotic figure (found or not).
    GroundTruth,
    /// A detection matched to a mitotic figure.
    TruePositive,
    /// A detection matched to nothing.
    FalsePositive,
    /// A mitotic figure no detection matched.
    Miss,
}

impl MarkKind {
    pub const ALL: [MarkKind; 4] =
        [MarkKind::GroundTruth, MarkKind::TruePositive, MarkKind::FalsePositive, MarkKind::Miss];

    pub fn colour(self) -> [u8; 3] {
        match self {
            MarkKind::GroundTruth => [0, 150, 255],
            MarkKind::TruePositive => [0, 200, 0],
            MarkKind::FalsePositive => [230, 30, 30],
            MarkKind::Miss => [255, 190, 0],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MarkKind::GroundTruth => "ground truth",
            MarkKind::TruePositive => "true positive",
            MarkKind::FalsePositive => "false positive",
            MarkKind::Miss => "miss",
        }
    }

    fn is_circle(self) -> bool {
        matches!(self, MarkKind::GroundTruth | MarkKind::Miss)
    }
}

/// An RGB8 image (row-major, 3 bytes per pixel, no padding) to draw on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedImage {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl AnnotatedImage {
    /// Wraps pixels, e.g. a crop read from a slide; the length must be `width · height · 3`.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<AnnotatedImage, PlotError> {
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(PlotError::BufferSize { width, height, expected, got: rgb.len() });
        }
        Ok(AnnotatedImage { width, height, rgb })
    }

    /// An image of one colour (a gallery's background).
    pub fn filled(width: u32, height: u32, colour: [u8; 3]) -> AnnotatedImage {
        let rgb = colour.iter().copied().cycle().take(width as usize * height as usize * 3).collect();
        AnnotatedImage { width, height, rgb }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    pub fn into_rgb(self) -> Vec<u8> {
        self.rgb
    }

    /// Copies `other` with its top-left corner at `(x, y)`; what falls outside is cut off.
    pub fn paste(&mut self, other: &AnnotatedImage, x: i64, y: i64) {
        for row in 0..i64::from(other.height) {
            let ty = y + row;
            if ty < 0 || ty >= i64::from(self.height) {
                continue;
            }
            let x0 = x.max(0);
            let x1 = (x + i64::from(other.width)).min(i64::from(self.width));
            if x0 >= x1 {
                return;
            }
            let src = ((row * i64::from(other.width) + (x0 - x)) * 3) as usize;
            let dst = ((ty * i64::from(self.width) + x0) * 3) as usize;
            let len = ((x1 - x0) * 3) as usize;
            self.rgb[dst..dst + len].copy_from_slice(&other.rgb[src..src + len]);
        }
    }

    /// Tiles `tiles` row by row, `columns` per row, each in a cell the size of the largest tile,
    /// `gap` pixels apart on a `background` colour.
    pub fn gallery(tiles: &[AnnotatedImage], columns: usize, gap: u32, background: [u8; 3]) -> AnnotatedImage {
        let columns = columns.max(1);
        let rows = tiles.len().div_ceil(columns);
        let cell_w = tiles.iter().map(|t| t.width).max().unwrap_or(0);
        let cell_h = tiles.iter().map(|t| t.height).max().unwrap_or(0);
        let span = |n: usize, cell: u32| n as u32 * cell + (n as u32 + 1) * gap;
        let mut out = AnnotatedImage::filled(
            span(columns.min(tiles.len().max(1)), cell_w),
            span(rows.max(1), cell_h),
            background,
        );
        for (i, tile) in tiles.iter().enumerate() {
            let (c, r) = ((i % columns) as u32, (i / columns) as u32);
            out.paste(tile, i64::from(gap + c * (cell_w + gap)), i64::from(gap + r * (cell_h + gap)));
        }
        out
    }

    /// An outlined rectangle with corners `(x1, y1)` and `(x2, y2)`, `stroke` pixels wide.
    pub fn rect(
        &mut self,
        (x1, y1): (i32, i32),
        (x2, y2): (i32, i32),
        colour: [u8; 3],
        stroke: u32,
    ) -> Result<(), PlotError> {
        self.draw(|area| area.draw(&Rectangle::new([(x1, y1), (x2, y2)], rgb(colour).stroke_width(stroke))))
    }

    /// An outlined circle around `centre`.
    pub fn circle(&mut self, centre: (i32, i32), radius: u32, colour: [u8; 3], stroke: u32) -> Result<(), PlotError> {
        self.draw(|area| area.draw(&Circle::new(centre, radius, rgb(colour).stroke_width(stroke))))
    }

    /// Text with its top-left corner at `at`, on a translucent white box so it reads on tissue.
    pub fn label(&mut self, at: (i32, i32), text: &str, size: u32, colour: [u8; 3]) -> Result<(), PlotError> {
        font::ensure_registered()?;
        self.draw(|area| {
            let colour = rgb(colour);
            let style = TextStyle::from((FAMILY, size).into_font()).color(&colour);
            let (w, h) = area.estimate_text_size(text, &style)?;
            let (w, h) = (w as i32, h as i32);
            area.draw(&Rectangle::new([(at.0 - 2, at.1 - 1), (at.0 + w + 2, at.1 + h + 1)], WHITE.mix(0.75).filled()))?;
            area.draw(&Text::new(text, at, style))
        })
    }

    /// The mark of one cell or detection at `centre`, sized for a cell of `radius` pixels: a circle
    /// for ground truth and misses, a square for detections, in the kind's colour.
    pub fn mark(&mut self, kind: MarkKind, centre: (f64, f64), radius: f64) -> Result<(), PlotError> {
        let (cx, cy, r) = (centre.0.round() as i32, centre.1.round() as i32, radius.max(1.0).round() as i32);
        let stroke = if kind == MarkKind::Miss { 3 } else { 2 };
        if kind.is_circle() {
            self.circle((cx, cy), r as u32, kind.colour(), stroke)
        } else {
            self.rect((cx - r, cy - r), (cx + r, cy + r), kind.colour(), stroke)
        }
    }

    /// A key to the four mark kinds, one per line, starting at `at`.
    pub fn mark_legend(&mut self, at: (i32, i32), size: u32) -> Result<(), PlotError> {
        let line = size as i32 + 6;
        for (i, kind) in MarkKind::ALL.into_iter().enumerate() {
            let y = at.1 + i as i32 * line;
            let half = size as f64 / 2.0 - 1.0;
            self.mark(kind, (f64::from(at.0) + half, f64::from(y) + half + 1.0), half)?;
            self.label((at.0 + size as i32 + 6, y), kind.label(), size, [0, 0, 0])?;
        }
        Ok(())
    }

    /// Writes the image as an 8-bit RGB PNG.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<(), PlotError> {
        let path = path.as_ref();
        check_png_target(path, self.width, self.height)?;
        write_png(path, self.width, self.height, &self.rgb)
    }

    /// Runs `f` on a drawing area over this image's own pixels.
    fn draw(
        &mut self,
        f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), DrawingAreaErrorKind<BitMapError>>,
    ) -> Result<(), PlotError> {
        let (w, h) = (self.width, self.height);
        let area = BitMapBackend::with_buffer(&mut self.rgb, (w, h)).into_drawing_area();
        f(&area).map_err(|e| PlotError::Canvas { message: e.to_string() })?;
        area.present().map_err(|e| PlotError::Canvas { message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_png::{count_colour, count_inked, read_png};

    fn tissue(w: u32, h: u32) -> AnnotatedImage {
        let rgb = (0..w * h).flat_map(|i| [235, 179, 218 - (i % 7) as u8]).collect();
        AnnotatedImage::from_rgb(w, h, rgb).unwrap()
    }

    #[test]
    fn draws_marks_in_their_colours_and_saves_a_gallery() {
        let dir = tempfile::tempdir().unwrap();
        let mut crops = Vec::new();
        for kind in MarkKind::ALL {
            let mut crop = tissue(128, 128);
            crop.mark(kind, (64.0, 64.0), 25.0).unwrap();
            crop.label((4, 4), kind.label(), 14, [0, 0, 0]).unwrap();
            let plotters::style::RGBColor(r, g, b) = rgb(kind.colour());
            assert!(crop.rgb().chunks_exact(3).filter(|p| p == &[r, g, b]).count() > 100, "{kind:?} drawn");
            crops.push(crop);
        }
        let mut gallery = AnnotatedImage::gallery(&crops, 3, 8, [255, 255, 255]);
        assert_eq!((gallery.width(), gallery.height()), (3 * 128 + 4 * 8, 2 * 128 + 3 * 8));
        gallery.mark_legend((150, 150), 14).unwrap();
        let path = dir.path().join("gallery.png");
        gallery.save_png(&path).unwrap();
        let img = read_png(&path);
        assert_eq!((img.width, img.height), (gallery.width(), gallery.height()));
        assert_eq!(img.rgb, gallery.rgb(), "saved pixels are the drawn pixels");
        assert!(count_colour(&img, rgb(MarkKind::FalsePositive.colour())) > 100);
        assert!(count_inked(&img) > 4 * 128 * 128 / 2);
    }

    #[test]
    fn paste_clips_and_buffer_size_is_checked() {
        let mut base = AnnotatedImage::filled(10, 10, [0, 0, 0]);
        base.paste(&AnnotatedImage::filled(4, 4, [9, 9, 9]), -2, 8);
        let nines = base.rgb().chunks_exact(3).filter(|p| p == &[9, 9, 9]).count();
        assert_eq!(nines, 2 * 2);
        base.paste(&AnnotatedImage::filled(4, 4, [7, 7, 7]), 20, 20);
        assert!(matches!(AnnotatedImage::from_rgb(2, 2, vec![0; 11]), Err(PlotError::BufferSize { .. })));
        let e = base.save_png("/nonexistent-dir/x.png").unwrap_err().to_string();
        assert!(e.contains("x.png"), "{e}");
    }
}
