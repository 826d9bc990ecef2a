//! Flips and 90° rotations of a square patch (the dihedral group D4), applied identically to
//! pixels and to boxes so that boxes follow their objects exactly.

/// A flip/rotation of a square: first the flips, then `rot90` quarter turns clockwise (in
/// image coordinates, y down: the top-left corner goes to the top-right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dihedral {
    pub flip_h: bool,
    pub flip_v: bool,
    pub rot90: u8,
}

impl Dihedral {
    pub const IDENTITY: Dihedral = Dihedral { flip_h: false, flip_v: false, rot90: 0 };

    /// Maps a point of the square [0, size]² (continuous coordinates: pixel i spans [i, i+1)).
    pub fn map_point(&self, x: f32, y: f32, size: f32) -> (f32, f32) {
        let (mut x, mut y) = (x, y);
        if self.flip_h {
            x = size - x;
        }
        if self.flip_v {
            y = size - y;
        }
        for _ in 0..self.rot90 % 4 {
            (x, y) = (size - y, x);
        }
        (x, y)
    }

    /// Maps a box `[x1, y1, x2, y2]` of the square [0, size]²; the result is again x1 ≤ x2, y1 ≤ y2.
    pub fn map_box(&self, b: [f32; 4], size: f32) -> [f32; 4] {
        let (ax, ay) = self.map_point(b[0], b[1], size);
        let (bx, by) = self.map_point(b[2], b[3], size);
        [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)]
    }

    /// The same map on pixel indices 0..n: where pixel (x, y) goes.
    fn map_index(&self, x: i64, y: i64, n: i64) -> (i64, i64) {
        let last = n - 1;
        let (mut x, mut y) = (x, y);
        if self.flip_h {
            x = last - x;
        }
        if self.flip_v {
            y = last - y;
        }
        for _ in 0..self.rot90 % 4 {
            (x, y) = (last - y, x);
        }
        (x, y)
    }

    pub fn is_identity(&self) -> bool {
        (0..2).all(|i| self.map_index(i, 1 - i, 3) == (i, 1 - i)) && self.map_index(0, 0, 3) == (0, 0)
    }

    /// Writes the transformed `n` × `n` RGB image `src` into `dst`.
    pub(crate) fn apply(&self, src: &[u8], dst: &mut [u8], n: usize) {
        let len = n * n * 3;
        let (src, dst) = (&src[..len], &mut dst[..len]);
        let ni = n as i64;
        // out = t + x·c0 + y·c1; the inverse of this orthogonal map is its transpose.
        let t = self.map_index(0, 0, ni);
        let c0 = sub(self.map_index(1, 0, ni), t);
        let c1 = sub(self.map_index(0, 1, ni), t);
        let step = (c0.0, c1.0); // source step per output column
        for (oy, dst_row) in dst.chunks_exact_mut(n * 3).enumerate() {
            let dy = oy as i64 - t.1;
            let (sx0, sy0) = (c0.0 * -t.0 + c0.1 * dy, c1.0 * -t.0 + c1.1 * dy);
            let start = (sy0 * ni + sx0) as usize * 3;
            match step {
                (1, 0) => dst_row.copy_from_slice(&src[start..start + n * 3]),
                (-1, 0) => {
                    let row = &src[start + 3 - n * 3..start + 3];
                    for (d, s) in dst_row.chunks_exact_mut(3).zip(row.chunks_exact(3).rev()) {
                        d.copy_from_slice(s);
                    }
                }
                (0, dir) => {
                    let stride = dir as isize * ni as isize * 3;
                    let mut at = start as isize;
                    for d in dst_row.chunks_exact_mut(3) {
                        let i = at as usize;
                        d.copy_from_slice(&src[i..i + 3]);
                        at += stride;
                    }
                }
                _ => unreachable!("dihedral maps move pixels along rows or columns"),
            }
        }
    }
}

fn sub(a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
    (a.0 - b.0, a.1 - b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> impl Iterator<Item = Dihedral> {
        (0..16u8).map(|i| Dihedral { flip_h: i & 1 == 1, flip_v: i & 2 == 2, rot90: i >> 2 })
    }

    #[test]
    fn pixels_and_boxes_move_together() {
        let n = 7;
        for d in all() {
            // A one-pixel "object" at every position: its box maps onto its pixel.
            for (x, y) in [(0usize, 0usize), (6, 0), (2, 5), (3, 3)] {
                let mut src = vec![0u8; n * n * 3];
                src[(y * n + x) * 3..][..3].copy_from_slice(&[9, 8, 7]);
                let mut dst = vec![0u8; n * n * 3];
                d.apply(&src, &mut dst, n);
                let at = dst.chunks_exact(3).position(|p| p == [9, 8, 7]).unwrap();
                let b = d.map_box([x as f32, y as f32, x as f32 + 1.0, y as f32 + 1.0], n as f32);
                assert_eq!(
                    b,
                    [(at % n) as f32, (at / n) as f32, (at % n) as f32 + 1.0, (at / n) as f32 + 1.0],
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn identity_detection_and_known_rotation() {
        let ids: Vec<_> = all().filter(Dihedral::is_identity).collect();
        assert_eq!(ids, [Dihedral::IDENTITY, Dihedral { flip_h: true, flip_v: true, rot90: 2 }]);
        let d = Dihedral { flip_h: false, flip_v: false, rot90: 1 };
        assert_eq!(d.map_point(0.0, 0.0, 10.0), (10.0, 0.0)); // top-left → top-right: clockwise
    }
}
