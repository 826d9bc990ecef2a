//! The little linear algebra stain estimation needs: a symmetric 3 × 3 eigen-decomposition
//! (cyclic Jacobi), 3 × 3 inverse, products, and percentiles by selection.

pub type Mat3 = [[f64; 3]; 3];

/// Eigenvalues (descending) and unit eigenvectors (`vectors[k]` belongs to `values[k]`) of a
/// symmetric matrix.
pub fn symmetric_eigen(a: Mat3) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = a;
    let mut v: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        if off < 1e-30 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
            // A ← Jᵀ A J with the rotation J in the (p, q) plane; V ← V J.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (row_p, row_q) = (a[p], a[q]);
            for k in 0..3 {
                a[p][k] = c * row_p[k] - s * row_q[k];
                a[q][k] = s * row_p[k] + c * row_q[k];
            }
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let values = order.map(|k| a[k][k]);
    let vectors = order.map(|k| [v[0][k], v[1][k], v[2][k]]);
    (values, vectors)
}

pub fn invert3(m: Mat3) -> Option<Mat3> {
    let cof = |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adj = [
        [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
        [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
        [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
    ];
    let det = m[0][0] * adj[0][0] + m[0][1] * adj[1][0] + m[0][2] * adj[2][0];
    (det.abs() > 1e-12).then(|| adj.map(|row| row.map(|v| v / det)))
}

pub fn mul3(a: &Mat3, b: &Mat3) -> Mat3 {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn normalise(v: [f64; 3]) -> [f64; 3] {
    let n = dot(v, v).sqrt();
    v.map(|x| x / n)
}

/// The `q`-th percentile (0–100, nearest rank) of `values`, reordering them.
pub fn percentile(values: &mut [f32], q: f64) -> f32 {
    let k = ((q / 100.0) * (values.len() - 1) as f64).round() as usize;
    *values.select_nth_unstable_by(k, f32::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let a = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (values, vectors) = symmetric_eigen(a);
        assert!(values[0] >= values[1] && values[1] >= values[2]);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| values[k] * vectors[k][i] * vectors[k][j]).sum();
                assert!((r - a[i][j]).abs() < 1e-10);
            }
            assert!((dot(vectors[i], vectors[i]) - 1.0).abs() < 1e-12);
        }
        let inv = invert3(a).unwrap();
        let id = mul3(&a, &inv);
        for (i, row) in id.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        let mut v: Vec<f32> = (0..101).map(|i| i as f32).rev().collect();
        assert_eq!(percentile(&mut v, 1.0), 1.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
    }
}
