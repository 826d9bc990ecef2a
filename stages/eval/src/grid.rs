//! A uniform grid over 2-D points, the spatial index behind centre-distance NMS and matching.
//!
//! Cells are squares of side `cell`; a query for the points within `r ≤ cell` of a position only
//! has to look at the 3 × 3 cells around it. The cells are kept as one vector sorted by
//! (row, column), so the three cells of a row are one contiguous run found by binary search: no
//! hash map, no per-cell allocation, and building costs one sort.

/// Points bucketed by cell; entries sorted by `(row, col, index)`.
pub(crate) struct PointGrid {
    cell: f64,
    entries: Vec<GridEntry>,
}

#[derive(Debug, Clone, Copy)]
struct GridEntry {
    row: i64,
    col: i64,
    index: usize,
    x: f64,
    y: f64,
}

impl PointGrid {
    /// Builds the grid for queries with radius up to `radius`. A radius that is not a positive
    /// number (0, negative, NaN) gets unit cells: such queries match at most exact duplicates.
    pub(crate) fn new(points: impl IntoIterator<Item = (f64, f64)>, radius: f64) -> PointGrid {
        let cell = if radius > 0.0 { radius } else { 1.0 };
        let mut entries: Vec<GridEntry> = points
            .into_iter()
            .enumerate()
            .map(|(index, (x, y))| GridEntry { row: cell_of(y, cell), col: cell_of(x, cell), index, x, y })
            .collect();
        entries.sort_unstable_by_key(|e| (e.row, e.col, e.index));
        PointGrid { cell, entries }
    }

    /// Calls `visit(index, distance²)` for every point whose distance to `(x, y)` is at most `r`
    /// (equality included). `r` must not exceed the radius the grid was built for; a negative or
    /// NaN `r` visits nothing.
    pub(crate) fn for_each_within(&self, x: f64, y: f64, r: f64, mut visit: impl FnMut(usize, f64)) {
        if r.is_nan() || r < 0.0 {
            return;
        }
        debug_assert!(r <= self.cell || !self.cell.is_finite(), "query radius {r} exceeds grid cell {}", self.cell);
        let r2 = r * r;
        let (row, col) = (cell_of(y, self.cell), cell_of(x, self.cell));
        for dr in [-1i64, 0, 1] {
            let qrow = row.saturating_add(dr);
            let (lo_col, hi_col) = (col.saturating_sub(1), col.saturating_add(1));
            let start = self.entries.partition_point(|e| (e.row, e.col) < (qrow, lo_col));
            let end = self.entries.partition_point(|e| (e.row, e.col) <= (qrow, hi_col));
            for e in &self.entries[start..end] {
                let (dx, dy) = (e.x - x, e.y - y);
                let d2 = dx * dx + dy * dy;
                if d2 <= r2 {
                    visit(e.index, d2);
                }
            }
        }
    }
}

/// The cell coordinate of a value; `as` saturates, so huge or non-finite values land in an edge
/// cell instead of wrapping (NaN coordinates land in cell 0 and never pass a distance test).
fn cell_of(v: f64, cell: f64) -> i64 {
    (v / cell).floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn finds_exactly_the_points_within_the_radius() {
        let mut rng = StdRng::seed_from_u64(7);
        let pts: Vec<(f64, f64)> =
            (0..2000).map(|_| (rng.random_range(-500.0..500.0), rng.random_range(0.0..300.0))).collect();
        let r = 17.5;
        let grid = PointGrid::new(pts.iter().copied(), r);
        for q in pts.iter().step_by(37) {
            let mut found = Vec::new();
            grid.for_each_within(q.0, q.1, r, |i, _| found.push(i));
            found.sort_unstable();
            let expected: Vec<usize> = (0..pts.len())
                .filter(|&i| {
                    let (dx, dy) = (pts[i].0 - q.0, pts[i].1 - q.1);
                    dx * dx + dy * dy <= r * r
                })
                .collect();
            assert_eq!(found, expected);
        }
    }

    #[test]
    fn radius_boundary_is_inclusive_and_degenerate_radii_are_safe() {
        let grid = PointGrid::new([(0.0, 0.0), (30.0, 0.0), (30.5, 0.0), (f64::NAN, 1.0)], 30.0);
        let mut found = Vec::new();
        grid.for_each_within(0.0, 0.0, 30.0, |i, _| found.push(i));
        assert_eq!(found, vec![0, 1]);
        found.clear();
        grid.for_each_within(0.0, 0.0, -1.0, |i, _| found.push(i));
        grid.for_each_within(0.0, 0.0, f64::NAN, |i, _| found.push(i));
        assert!(found.is_empty());
        let zero = PointGrid::new([(5.0, 5.0), (5.0, 5.0), (5.0, 5.1)], 0.0);
        zero.for_each_within(5.0, 5.0, 0.0, |i, _| found.push(i));
        assert_eq!(found, vec![0, 1]);
    }
}
