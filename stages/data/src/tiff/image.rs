//! `TiffImage`: an open pyramidal TIFF and its region reads.
//!
//! Reads take `&self` and may run on any number of threads at once: bytes come in by positional
//! reads, each call decodes the chunks it needs itself (no shared decoder), and decoded chunks
//! go through the shared [`TileCache`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cache::{ChunkKey, DecodedChunk, TileCache};
use super::codec;
use super::ifd::{Header, Ifd};
use super::info::TiffInfo;
use super::level::{Level, LevelInfo};
use super::resolution;
use super::source::Source;
use super::tags;
use crate::error::DataError;

/// Cache budget of an image opened with [`TiffImage::open`] (its own cache).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Distinguishes open files in a shared cache (two opens of one path are two files).
static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// An open TIFF: levels sorted from full resolution down, read by region.
#[derive(Debug)]
pub struct TiffImage {
    source: Source,
    header: Header,
    file_id: u64,
    levels: Vec<Level>,
    level_infos: Vec<LevelInfo>,
    ifd_count: usize,
    um_per_px: Option<f64>,
    cache: Arc<TileCache>,
}

impl TiffImage {
    /// Opens `path` with a private cache of [`DEFAULT_CACHE_BYTES`].
    pub fn open(path: impl AsRef<Path>) -> Result<TiffImage, DataError> {
        TiffImage::open_with_cache(path, Arc::new(TileCache::new(DEFAULT_CACHE_BYTES)))
    }

    /// Opens `path`, caching decoded chunks in `cache` (shared with other images and threads).
    pub fn open_with_cache(path: impl AsRef<Path>, cache: Arc<TileCache>) -> Result<TiffImage, DataError> {
        let path = path.as_ref();
        let source = Source::open(path)?;
        let fail = |message: String| DataError::tiff(path, message);
        let header = Header::read(&source).map_err(fail)?;
        let chain = Ifd::read_chain(&source, &header).map_err(fail)?;
        let base = Level::from_ifd(&source, &chain[0]).map_err(|e| fail(format!("IFD 0 (full resolution): {e}")))?;

        let mut candidates: Vec<Ifd> = chain[1..].to_vec();
        let sub_ifds = chain[0].uints(&source, tags::SUB_IFDS).map_err(|e| fail(format!("IFD 0: {e}")))?;
        for offset in sub_ifds.unwrap_or_default() {
            candidates.push(Ifd::read(&source, &header, offset).map_err(|e| fail(format!("SubIFD: {e}")))?);
        }
        let mut levels = vec![base];
        for ifd in &candidates {
            match Level::from_ifd(&source, ifd) {
                Ok(level) if is_reduced_copy(&levels[0], &level) => {
                    if levels.iter().all(|l| l.info.width != level.info.width) {
                        levels.push(level);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("{}: IFD at {} is not a level: {e}", path.display(), ifd.offset),
            }
        }
        levels.sort_by_key(|l| std::cmp::Reverse(l.info.width));
        let (w0, h0) = (f64::from(levels[0].info.width), f64::from(levels[0].info.height));
        for level in &mut levels {
            let (w, h) = (f64::from(level.info.width), f64::from(level.info.height));
            level.info.downsample = (w0 / w + h0 / h) / 2.0;
        }
        let level_infos = levels.iter().map(|l| l.info.clone()).collect();
        Ok(TiffImage {
            um_per_px: resolution::um_per_px(&source, &chain[0]),
            ifd_count: 1 + candidates.len(),
            source,
            header,
            file_id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
            levels,
            level_infos,
            cache,
        })
    }

    pub fn path(&self) -> &Path {
        self.source.path()
    }

    /// Level-0 width in pixels.
    pub fn width(&self) -> u32 {
        self.level_infos[0].width
    }

    /// Level-0 height in pixels.
    pub fn height(&self) -> u32 {
        self.level_infos[0].height
    }

    /// Levels from full resolution (0) down.
    pub fn levels(&self) -> &[LevelInfo] {
        &self.level_infos
    }

    /// Level-0 pixel size in µm, from the resolution tags (or an Aperio description).
    pub fn um_per_px(&self) -> Option<f64> {
        self.um_per_px
    }

    pub fn cache(&self) -> &Arc<TileCache> {
        &self.cache
    }

    /// Everything `pipeline inspect` shows about the file.
    pub fn info(&self) -> TiffInfo {
        let base = &self.level_infos[0];
        TiffInfo {
            path: self.path().to_path_buf(),
            file_size: self.source.len(),
            bigtiff: self.header.bigtiff,
            byte_order: self.header.order,
            width: base.width,
            height: base.height,
            layout: base.layout,
            compression: base.compression,
            photometric: base.photometric,
            samples_per_pixel: base.samples_per_pixel,
            predictor: base.predictor,
            um_per_px: self.um_per_px,
            directories: self.ifd_count,
            levels: self.level_infos.clone(),
        }
    }

    /// Reads the `w` × `h` region at (`x`, `y`) of `level` (in that level's pixels) into `out`
    /// as interleaved RGB (`w * h * 3` bytes). Pixels outside the image are white (255).
    pub fn read_region(&self, level: usize, x: i64, y: i64, w: u32, h: u32, out: &mut [u8]) -> Result<(), DataError> {
        let lvl = self.levels.get(level).ok_or_else(|| {
            DataError::invalid(self.path(), format!("level {level} requested, the file has {}", self.levels.len()))
        })?;
        let need = w as usize * h as usize * 3;
        if out.len() != need {
            return Err(DataError::invalid(
                self.path(),
                format!("region {w} × {h} needs a {need}-byte buffer, got {} bytes", out.len()),
            ));
        }
        let (rw, rh) = (i64::from(w), i64::from(h));
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = x.saturating_add(rw).min(i64::from(lvl.info.width));
        let y1 = y.saturating_add(rh).min(i64::from(lvl.info.height));
        if x0 >= x1 || y0 >= y1 {
            out.fill(255);
            return Ok(());
        }
        if (x0, y0, x1, y1) != (x, y, x.saturating_add(rw), y.saturating_add(rh)) {
            out.fill(255);
        }
        let (cw, ch) = (i64::from(lvl.chunk_width), i64::from(lvl.chunk_height));
        let stride = rw as usize * 3;
        for chunk_row in y0 / ch..=(y1 - 1) / ch {
            for chunk_col in x0 / cw..=(x1 - 1) / cw {
                let index = (chunk_row * i64::from(lvl.chunks_across) + chunk_col) as usize;
                let chunk = self.chunk(level, index)?;
                let (left, top) = (chunk_col * cw, chunk_row * ch);
                let cx0 = x0.max(left);
                let cx1 = x1.min(left + cw);
                let cy0 = y0.max(top);
                let cy1 = y1.min(top + i64::from(chunk.height));
                let n = (cx1 - cx0) as usize * 3;
                let chunk_stride = chunk.width as usize * 3;
                let mut src = (cy0 - top) as usize * chunk_stride + (cx0 - left) as usize * 3;
                let mut dst = (cy0 - y) as usize * stride + (cx0 - x) as usize * 3;
                for _ in cy0..cy1 {
                    out[dst..dst + n].copy_from_slice(&chunk.pixels[src..src + n]);
                    src += chunk_stride;
                    dst += stride;
                }
            }
        }
        Ok(())
    }

    /// Number of stored chunks (tiles or strips) of `level`.
    pub fn chunk_count(&self, level: usize) -> usize {
        self.levels.get(level).map_or(0, |l| l.offsets.len())
    }

    /// File offset and stored length of chunk `index` of `level` (for diagnostics and tests).
    pub fn chunk_byte_range(&self, level: usize, index: usize) -> Option<(u64, u64)> {
        let level = self.levels.get(level)?;
        Some((*level.offsets.get(index)?, *level.byte_counts.get(index)?))
    }

    /// Number of stored chunks of every level together (what [`verify`](Self::verify) decodes).
    pub fn chunk_total(&self) -> usize {
        self.levels.iter().map(|l| l.offsets.len()).sum()
    }

    /// Decodes every stored chunk of every level once, in parallel and without caching, so a
    /// truncated or corrupt tile is found when the dataset is checked instead of when a patch or
    /// an inference tile first touches it (hours later, or never: a patch loader that hit it
    /// would stop training). `on_chunk` is called after each chunk. The error is that of the first
    /// bad chunk in file order, naming the file, level, tile (column, row) and byte offset.
    pub fn verify(&self, on_chunk: &(dyn Fn() + Sync)) -> Result<(), DataError> {
        use rayon::prelude::*;
        let chunks: Vec<(usize, usize)> =
            (0..self.levels.len()).flat_map(|l| (0..self.chunk_count(l)).map(move |i| (l, i))).collect();
        let results: Vec<Result<(), DataError>> = chunks
            .par_iter()
            .map(|&(level, index)| {
                let decoded = self.decode_chunk(level, index).map(drop);
                on_chunk();
                decoded
            })
            .collect();
        results.into_iter().collect()
    }

    /// [`read_region`](Self::read_region) into a new buffer.
    pub fn read_region_vec(&self, level: usize, x: i64, y: i64, w: u32, h: u32) -> Result<Vec<u8>, DataError> {
        let mut out = vec![0u8; w as usize * h as usize * 3];
        self.read_region(level, x, y, w, h, &mut out)?;
        Ok(out)
    }

    /// A decoded chunk, from the cache or decoded now (outside any lock).
    fn chunk(&self, level: usize, index: usize) -> Result<Arc<DecodedChunk>, DataError> {
        let key = ChunkKey { file: self.file_id, level: level as u32, index: index as u32 };
        if let Some(chunk) = self.cache.get(key) {
            return Ok(chunk);
        }
        let chunk = Arc::new(self.decode_chunk(level, index)?);
        self.cache.insert(key, Arc::clone(&chunk));
        Ok(chunk)
    }

    fn decode_chunk(&self, level: usize, index: usize) -> Result<DecodedChunk, DataError> {
        let lvl = &self.levels[level];
        let (col, row) = (index as u32 % lvl.chunks_across, index as u32 / lvl.chunks_across);
        let rows = lvl.stored_rows(row);
        let (offset, count) = (lvl.offsets[index], lvl.byte_counts[index]);
        let fail = |message: String| DataError::TiffChunk {
            path: self.path().to_path_buf(),
            level,
            kind: lvl.kind(),
            index,
            message: format!("{message} (column {col}, row {row}; {count} bytes at offset {offset})"),
        };
        let width = lvl.chunk_width;
        if offset == 0 && count == 0 {
            // A sparse chunk the writer never stored (empty background): white.
            return Ok(DecodedChunk { width, height: rows, pixels: vec![255; width as usize * rows as usize * 3] });
        }
        let data = self.source.read_vec(offset, count).map_err(fail)?;
        let decoded = catch_unwind(AssertUnwindSafe(|| codec::decode_chunk(lvl, &data, rows)))
            .unwrap_or_else(|_| Err("the decoder panicked on this chunk's data".into()))
            .map_err(fail)?;
        Ok(DecodedChunk { width, height: rows, pixels: decoded })
    }
}

/// Whether `level` is a reduced-resolution copy of `base`: same storage kind (so an SVS's
/// stripped thumbnail, label and macro images are not levels), smaller, same aspect ratio.
fn is_reduced_copy(base: &Level, level: &Level) -> bool {
    let (w0, h0) = (f64::from(base.info.width), f64::from(base.info.height));
    let (w, h) = (f64::from(level.info.width), f64::from(level.info.height));
    let expected_h = h0 * w / w0;
    base.is_tiled() == level.is_tiled()
        && (level.reduced || base.is_tiled())
        && w < w0
        && h < h0
        && (h - expected_h).abs() <= (0.02 * expected_h).max(2.0)
}
