//! One resolution level of a TIFF: an IFD checked once at open into everything a read needs
//! (size, tile or strip grid, chunk offsets, codec). Only 8-bit RGB(A), chunky (interleaved)
//! images are levels; anything else is rejected with a message saying what it is.

use std::fmt;
use std::sync::Arc;

use super::ifd::Ifd;
use super::source::Source;
use super::tags;
use crate::error::ChunkKind;

/// Compression schemes this reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// 1.
    None,
    /// 5: TIFF LZW (MSB-first codes, early change).
    Lzw,
    /// 7: JPEG ("new-style", optionally with shared JPEGTables).
    Jpeg,
    /// 8 (Adobe) or 32946 (the older code): zlib streams.
    Deflate { code: u16 },
}

impl Compression {
    fn from_code(code: u64) -> Result<Compression, String> {
        Ok(match code {
            1 => Compression::None,
            5 => Compression::Lzw,
            7 => Compression::Jpeg,
            8 | 32946 => Compression::Deflate { code: code as u16 },
            6 => return Err("old-style JPEG (compression 6) is not supported; convert the file".into()),
            other => return Err(format!("compression {other} is not supported (none, LZW, Deflate, JPEG are)")),
        })
    }

    /// The TIFF Compression tag value.
    pub fn code(self) -> u16 {
        match self {
            Compression::None => 1,
            Compression::Lzw => 5,
            Compression::Jpeg => 7,
            Compression::Deflate { code } => code,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lzw => "LZW",
            Compression::Jpeg => "JPEG",
            Compression::Deflate { .. } => "Deflate",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// How the stored samples are to be read as colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Photometric {
    /// 2: samples are R, G, B (also inside JPEG streams: no colour conversion).
    Rgb,
    /// 6: JPEG streams hold Y, Cb, Cr, converted with JPEG's full-range BT.601.
    YCbCr,
}

impl Photometric {
    pub fn code(self) -> u16 {
        match self {
            Photometric::Rgb => 2,
            Photometric::YCbCr => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Photometric::Rgb => "RGB",
            Photometric::YCbCr => "YCbCr",
        }
    }
}

/// Tiles or strips, with their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLayout {
    Tiled { tile_width: u32, tile_height: u32 },
    Stripped { rows_per_strip: u32 },
}

impl fmt::Display for ChunkLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkLayout::Tiled { tile_width, tile_height } => write!(f, "tiled {tile_width} × {tile_height}"),
            ChunkLayout::Stripped { rows_per_strip } => write!(f, "stripped, {rows_per_strip} rows per strip"),
        }
    }
}

/// Public description of one level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelInfo {
    pub width: u32,
    pub height: u32,
    /// Level-0 width divided by this level's width (1 for level 0).
    pub downsample: f64,
    pub layout: ChunkLayout,
    pub compression: Compression,
    pub photometric: Photometric,
    /// 3 (RGB) or 4 (RGB + alpha, alpha dropped on read).
    pub samples_per_pixel: u16,
    /// Whether the codec undoes TIFF's horizontal differencing predictor (2).
    pub predictor: bool,
    /// File offset of the level's IFD.
    pub ifd_offset: u64,
}

/// A level ready to read from: geometry, the chunk grid and how to decode a chunk.
#[derive(Debug)]
pub(crate) struct Level {
    pub info: LevelInfo,
    /// Chunk (tile, or strip: full width) size in pixels.
    pub chunk_width: u32,
    pub chunk_height: u32,
    pub chunks_across: u32,
    pub offsets: Vec<u64>,
    pub byte_counts: Vec<u64>,
    /// SOI, tables, EOI shared by all JPEG chunks (JPEGTables), if the file has them.
    pub jpeg_tables: Option<Arc<[u8]>>,
    /// NewSubfileType bit 0: the writer marked this IFD as a reduced-resolution copy.
    pub reduced: bool,
}

/// Largest decoded chunk accepted (a corrupt tile size must not allocate gigabytes).
const MAX_CHUNK_BYTES: u64 = 256 << 20;

impl Level {
    /// Checks an IFD and builds the level; the error says what is unsupported or broken.
    pub(crate) fn from_ifd(src: &Source, ifd: &Ifd) -> Result<Level, String> {
        let required = |tag: u16| -> Result<u64, String> {
            ifd.uint(src, tag)?.ok_or_else(|| format!("required tag {} ({tag}) is missing", tags::tag_name(tag)))
        };
        let width = required(tags::IMAGE_WIDTH)?;
        let height = required(tags::IMAGE_LENGTH)?;
        if width == 0 || height == 0 || width > u64::from(u32::MAX / 4) || height > u64::from(u32::MAX / 4) {
            return Err(format!("image size {width} × {height} is not usable"));
        }
        let (width, height) = (width as u32, height as u32);

        let samples = ifd.uint(src, tags::SAMPLES_PER_PIXEL)?.unwrap_or(1);
        if samples != 3 && samples != 4 {
            return Err(format!("{samples} samples per pixel; only RGB (3) and RGBA (4) are supported"));
        }
        let bits = ifd.uints(src, tags::BITS_PER_SAMPLE)?.unwrap_or_else(|| vec![1]);
        if bits.is_empty() || bits.iter().any(|&b| b != 8) {
            return Err(format!("bits per sample {bits:?}; only 8-bit samples are supported"));
        }
        if let Some(format) = ifd.uint(src, tags::SAMPLE_FORMAT)?
            && format != 1
        {
            return Err(format!("sample format {format}; only unsigned integers (1) are supported"));
        }
        let planar = ifd.uint(src, tags::PLANAR_CONFIGURATION)?.unwrap_or(1);
        if planar != 1 {
            return Err(format!("planar configuration {planar}; only interleaved samples (1) are supported"));
        }
        let compression = Compression::from_code(ifd.uint(src, tags::COMPRESSION)?.unwrap_or(1))?;
        let photometric = match ifd.uint(src, tags::PHOTOMETRIC)? {
            Some(2) => Photometric::Rgb,
            Some(6) if compression == Compression::Jpeg => Photometric::YCbCr,
            Some(6) => return Err("YCbCr photometric is only supported inside JPEG-compressed chunks".into()),
            Some(other) => return Err(format!("photometric interpretation {other}; only RGB (2) and YCbCr (6) are")),
            None => return Err("PhotometricInterpretation tag is missing".into()),
        };
        if compression == Compression::Jpeg && samples != 3 {
            return Err(format!("JPEG with {samples} samples per pixel is not supported (3 are)"));
        }
        let predictor = match ifd.uint(src, tags::PREDICTOR)?.unwrap_or(1) {
            1 => false,
            2 => compression != Compression::Jpeg,
            other => return Err(format!("predictor {other} is not supported (1 and 2 are)")),
        };

        let tile_width = ifd.uint(src, tags::TILE_WIDTH)?;
        let tile_height = ifd.uint(src, tags::TILE_LENGTH)?;
        let (layout, chunk_width, chunk_height, offsets_tag, counts_tag) = match (tile_width, tile_height) {
            (Some(tw), Some(th)) => {
                if tw == 0 || th == 0 || tw > 1 << 16 || th > 1 << 16 {
                    return Err(format!("tile size {tw} × {th} is not usable"));
                }
                let layout = ChunkLayout::Tiled { tile_width: tw as u32, tile_height: th as u32 };
                (layout, tw as u32, th as u32, tags::TILE_OFFSETS, tags::TILE_BYTE_COUNTS)
            }
            (None, None) => {
                let rows =
                    ifd.uint(src, tags::ROWS_PER_STRIP)?.unwrap_or(u64::from(height)).clamp(1, u64::from(height));
                let layout = ChunkLayout::Stripped { rows_per_strip: rows as u32 };
                (layout, width, rows as u32, tags::STRIP_OFFSETS, tags::STRIP_BYTE_COUNTS)
            }
            _ => return Err("only one of TileWidth and TileLength is present".into()),
        };
        if u64::from(chunk_width) * u64::from(chunk_height) * samples > MAX_CHUNK_BYTES {
            return Err(format!("a {chunk_width} × {chunk_height} chunk is larger than {MAX_CHUNK_BYTES} bytes"));
        }
        let chunks_across = width.div_ceil(chunk_width);
        let chunks_down = height.div_ceil(chunk_height);
        let n_chunks = chunks_across as usize * chunks_down as usize;
        let mut offsets = ifd
            .uints(src, offsets_tag)?
            .ok_or_else(|| format!("required tag {} ({offsets_tag}) is missing", tags::tag_name(offsets_tag)))?;
        let mut byte_counts = ifd
            .uints(src, counts_tag)?
            .ok_or_else(|| format!("required tag {} ({counts_tag}) is missing", tags::tag_name(counts_tag)))?;
        for (name, list) in [(tags::tag_name(offsets_tag), &offsets), (tags::tag_name(counts_tag), &byte_counts)] {
            if list.len() < n_chunks {
                return Err(format!(
                    "{name} has {} values, expected {n_chunks} ({chunks_across} × {chunks_down} chunks)",
                    list.len()
                ));
            }
        }
        offsets.truncate(n_chunks);
        byte_counts.truncate(n_chunks);
        let jpeg_tables = match compression {
            Compression::Jpeg => ifd.raw(src, tags::JPEG_TABLES)?.map(|(_, bytes)| Arc::from(bytes)),
            _ => None,
        };
        let reduced = ifd.uint(src, tags::NEW_SUBFILE_TYPE)?.unwrap_or(0) & 1 == 1;
        Ok(Level {
            info: LevelInfo {
                width,
                height,
                downsample: 1.0,
                layout,
                compression,
                photometric,
                samples_per_pixel: samples as u16,
                predictor,
                ifd_offset: ifd.offset,
            },
            chunk_width,
            chunk_height,
            chunks_across,
            offsets,
            byte_counts,
            jpeg_tables,
            reduced,
        })
    }

    pub(crate) fn kind(&self) -> ChunkKind {
        match self.info.layout {
            ChunkLayout::Tiled { .. } => ChunkKind::Tile,
            ChunkLayout::Stripped { .. } => ChunkKind::Strip,
        }
    }

    pub(crate) fn is_tiled(&self) -> bool {
        matches!(self.info.layout, ChunkLayout::Tiled { .. })
    }

    /// Rows actually stored in chunk row `row`: a full chunk, except the last strip of a
    /// stripped image (tiles are always stored whole, padded past the image edge).
    pub(crate) fn stored_rows(&self, chunk_row: u32) -> u32 {
        if self.is_tiled() {
            self.chunk_height
        } else {
            self.chunk_height.min(self.info.height - chunk_row * self.chunk_height)
        }
    }
}
