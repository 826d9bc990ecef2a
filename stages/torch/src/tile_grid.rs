//! Overlapping tiles covering a whole image: every pixel is inside at least one tile, adjacent
//! tiles overlap by at least the requested amount, and the last row and column end exactly at
//! the border (no tile reaches outside an image larger than a tile).

/// The overlap between neighbouring tiles: a fraction of the tile (< 1) or pixels (≥ 1).
pub fn overlap_px(tile: u32, overlap: f64) -> u32 {
    let px = if overlap < 1.0 { (tile as f64 * overlap).ceil() } else { overlap.round() };
    (px.max(0.0) as u32).min(tile.saturating_sub(1))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileGrid {
    pub tile: u32,
    pub xs: Vec<i64>,
    pub ys: Vec<i64>,
}

impl TileGrid {
    /// Tiles of side `tile` every `tile - overlap_px` pixels; the last tile of each axis is moved
    /// back to end at the border. An axis shorter than a tile gets one tile at 0 (read padded).
    pub fn new(width: u32, height: u32, tile: u32, overlap: f64) -> TileGrid {
        let stride = (tile - overlap_px(tile, overlap)).max(1);
        TileGrid { tile, xs: axis(width, tile, stride), ys: axis(height, tile, stride) }
    }

    pub fn len(&self) -> usize {
        self.xs.len() * self.ys.len()
    }

    /// Tile origins, row by row.
    pub fn origins(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ys.iter().flat_map(move |&y| self.xs.iter().map(move |&x| (x, y)))
    }
}

fn axis(size: u32, tile: u32, stride: u32) -> Vec<i64> {
    if size <= tile {
        return vec![0];
    }
    let last = (size - tile) as i64;
    let mut out: Vec<i64> = (0..).map(|i| i * stride as i64).take_while(|&p| p < last).collect();
    out.push(last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_grid_has_192_tiles() {
        // MIDOG reference: 512 px tiles every 460 px over a 7215 × 5412 image.
        let g = TileGrid::new(7215, 5412, 512, 0.1);
        assert_eq!(g.xs[1] - g.xs[0], 460);
        assert_eq!(g.len(), 192);
        assert_eq!(*g.xs.last().unwrap(), 7215 - 512);
        assert_eq!(*g.ys.last().unwrap(), 5412 - 512);
    }

    #[test]
    fn awkward_sizes_are_covered_with_the_requested_overlap() {
        for (w, h) in [(513, 512), (1000, 777), (6206, 4666), (511, 2000), (7125, 5334), (1, 1), (1024, 1024)] {
            for (tile, overlap) in [(512u32, 0.1), (512, 0.0), (256, 0.25), (512, 0.5), (512, 64.0)] {
                let g = TileGrid::new(w, h, tile, overlap);
                let want = overlap_px(tile, overlap) as i64;
                for (axis, size) in [(&g.xs, w), (&g.ys, h)] {
                    assert_eq!(axis[0], 0);
                    // Every pixel covered; neighbours overlap by at least the request.
                    let end = |p: i64| p + tile as i64;
                    assert!(end(*axis.last().unwrap()) >= size as i64);
                    if size > tile {
                        assert_eq!(end(*axis.last().unwrap()), size as i64, "last tile ends at the border");
                    }
                    for pair in axis.windows(2) {
                        assert!(pair[1] > pair[0]);
                        assert!(end(pair[0]) - pair[1] >= want, "{w}×{h} tile {tile} overlap {overlap}: {axis:?}");
                    }
                }
                // Pixel-exact coverage check on small images.
                if w * h <= 1_100_000 {
                    let mut covered = vec![false; (w * h) as usize];
                    for (x, y) in g.origins() {
                        for yy in y.max(0)..(y + tile as i64).min(h as i64) {
                            for xx in x.max(0)..(x + tile as i64).min(w as i64) {
                                covered[(yy * w as i64 + xx) as usize] = true;
                            }
                        }
                    }
                    assert!(covered.iter().all(|c| *c), "{w}×{h} not covered");
                }
            }
        }
    }
}
