//! `TiffInfo`: what `pipeline inspect FILE.tiff` prints about a TIFF.

use std::fmt;
use std::path::PathBuf;

use super::ifd::ByteOrder;
use super::level::{ChunkLayout, Compression, LevelInfo, Photometric};

/// Structure of an open TIFF (level 0 unless it says otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct TiffInfo {
    pub path: PathBuf,
    pub file_size: u64,
    pub bigtiff: bool,
    pub byte_order: ByteOrder,
    pub width: u32,
    pub height: u32,
    pub layout: ChunkLayout,
    pub compression: Compression,
    pub photometric: Photometric,
    pub samples_per_pixel: u16,
    pub predictor: bool,
    pub um_per_px: Option<f64>,
    /// Image directories read (main chain and SubIFDs), levels or not.
    pub directories: usize,
    pub levels: Vec<LevelInfo>,
}

impl fmt::Display for TiffInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = if self.bigtiff { "BigTIFF" } else { "TIFF" };
        writeln!(f, "{}", self.path.display())?;
        writeln!(f, "  format       {format}, {}, {}", self.byte_order.name(), human_bytes(self.file_size))?;
        writeln!(f, "  size         {} × {} px", self.width, self.height)?;
        match self.layout {
            ChunkLayout::Tiled { tile_width, tile_height } => writeln!(
                f,
                "  layout       tiled, {tile_width} × {tile_height} px tiles ({} × {})",
                self.width.div_ceil(tile_width),
                self.height.div_ceil(tile_height)
            )?,
            ChunkLayout::Stripped { rows_per_strip } => writeln!(
                f,
                "  layout       stripped, {rows_per_strip} rows per strip ({} strips)",
                self.height.div_ceil(rows_per_strip)
            )?,
        }
        let alpha = if self.samples_per_pixel == 4 { " (alpha ignored)" } else { "" };
        let predictor = if self.predictor { ", horizontal predictor" } else { "" };
        writeln!(f, "  compression  {}{predictor}", self.compression)?;
        writeln!(
            f,
            "  colour       {} ({}), {} samples per pixel{alpha}, 8 bits",
            self.photometric.name(),
            self.photometric.code(),
            self.samples_per_pixel
        )?;
        match self.um_per_px {
            Some(um) => writeln!(
                f,
                "  resolution   {um:.4} µm/px ({:.2} × {:.2} mm)",
                f64::from(self.width) * um / 1000.0,
                f64::from(self.height) * um / 1000.0
            )?,
            None => writeln!(f, "  resolution   unknown (no usable resolution tags)")?,
        }
        writeln!(f, "  levels       {} (of {} image directories)", self.levels.len(), self.directories)?;
        for (i, level) in self.levels.iter().enumerate() {
            writeln!(
                f,
                "    {i:>2}  {:>6} × {:<6} ×{:<7.2} {}, {}",
                level.width, level.height, level.downsample, level.layout, level.compression
            )?;
        }
        Ok(())
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}
