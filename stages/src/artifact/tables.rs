//! Parquet tables (via polars) that users open in polars, pandas or DuckDB, with a small typed
//! builder and readers for the columns stages exchange.

use std::path::Path;

use engine::StageError;
use polars::prelude::*;

/// Column-by-column construction of a table.
#[derive(Default)]
pub struct TableBuilder {
    columns: Vec<Column>,
}

impl TableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u32(mut self, name: &str, values: Vec<u32>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn u64(mut self, name: &str, values: Vec<u64>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn i64(mut self, name: &str, values: Vec<i64>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn f64(mut self, name: &str, values: Vec<f64>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn opt_f64(mut self, name: &str, values: Vec<Option<f64>>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn str(mut self, name: &str, values: Vec<String>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn bool(mut self, name: &str, values: Vec<bool>) -> Self {
        self.columns.push(Column::new(name.into(), values));
        self
    }

    pub fn build(self) -> Result<DataFrame, StageError> {
        DataFrame::new_infer_height(self.columns).map_err(|e| StageError::msg(format!("building a table: {e}")))
    }

    pub fn write(self, path: &Path) -> Result<(), StageError> {
        let mut df = self.build()?;
        write_parquet(path, &mut df)
    }
}

pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), StageError> {
    let file = std::fs::File::create(path).map_err(|e| StageError::io(path, e))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Snappy)
        .finish(df)
        .map_err(|e| StageError::msg(format!("{}: writing parquet: {e}", path.display())))?;
    Ok(())
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, StageError> {
    let file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    ParquetReader::new(file).finish().map_err(|e| StageError::msg(format!("{}: reading parquet: {e}", path.display())))
}

fn col<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<&'a Column, StageError> {
    df.column(name).map_err(|_| StageError::msg(format!("{}: no column `{name}`", path.display())))
}

pub fn f64_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<f64>, StageError> {
    let c = col(df, name, path)?;
    let c =
        c.cast(&DataType::Float64).map_err(|e| StageError::msg(format!("{}: column `{name}`: {e}", path.display())))?;
    let ca = c.f64().map_err(|e| StageError::msg(format!("{}: column `{name}`: {e}", path.display())))?;
    Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

pub fn u32_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<u32>, StageError> {
    let c = col(df, name, path)?;
    let c =
        c.cast(&DataType::UInt32).map_err(|e| StageError::msg(format!("{}: column `{name}`: {e}", path.display())))?;
    let ca = c.u32().map_err(|e| StageError::msg(format!("{}: column `{name}`: {e}", path.display())))?;
    Ok(ca.iter().map(|v| v.unwrap_or(0)).collect())
}

pub fn str_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<String>, StageError> {
    let c = col(df, name, path)?;
    let ca = c.str().map_err(|e| StageError::msg(format!("{}: column `{name}`: {e}", path.display())))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

/// Candidate boxes of the tile_infer stage (before NMS), one row per box.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    pub image_id: Vec<u32>,
    pub tile: Vec<u32>,
    pub x1: Vec<f64>,
    pub y1: Vec<f64>,
    pub x2: Vec<f64>,
    pub y2: Vec<f64>,
    pub score: Vec<f64>,
}

pub const CANDIDATES_FILE: &str = "candidates.parquet";
pub const DETECTIONS_FILE: &str = "detections.parquet";

impl Candidates {
    pub fn push(&mut self, image_id: u32, tile: u32, b: [f64; 4], score: f64) {
        self.image_id.push(image_id);
        self.tile.push(tile);
        self.x1.push(b[0]);
        self.y1.push(b[1]);
        self.x2.push(b[2]);
        self.y2.push(b[3]);
        self.score.push(score);
    }

    pub fn len(&self) -> usize {
        self.score.len()
    }

    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }

    pub fn write(&self, path: &Path) -> Result<(), StageError> {
        TableBuilder::new()
            .u32("image_id", self.image_id.clone())
            .u32("tile", self.tile.clone())
            .f64("x1", self.x1.clone())
            .f64("y1", self.y1.clone())
            .f64("x2", self.x2.clone())
            .f64("y2", self.y2.clone())
            .f64("score", self.score.clone())
            .write(path)
    }

    pub fn read(path: &Path) -> Result<Candidates, StageError> {
        let df = read_parquet(path)?;
        Ok(Candidates {
            image_id: u32_column(&df, "image_id", path)?,
            tile: u32_column(&df, "tile", path)?,
            x1: f64_column(&df, "x1", path)?,
            y1: f64_column(&df, "y1", path)?,
            x2: f64_column(&df, "x2", path)?,
            y2: f64_column(&df, "y2", path)?,
            score: f64_column(&df, "score", path)?,
        })
    }
}

/// Final detections (cell centres) after NMS, one row per detection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detections {
    pub image_id: Vec<u32>,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub score: Vec<f64>,
}

impl Detections {
    pub fn push(&mut self, image_id: u32, x: f64, y: f64, score: f64) {
        self.image_id.push(image_id);
        self.x.push(x);
        self.y.push(y);
        self.score.push(score);
    }

    pub fn write(&self, path: &Path) -> Result<(), StageError> {
        TableBuilder::new()
            .u32("image_id", self.image_id.clone())
            .f64("x", self.x.clone())
            .f64("y", self.y.clone())
            .f64("score", self.score.clone())
            .write(path)
    }

    pub fn read(path: &Path) -> Result<Detections, StageError> {
        let df = read_parquet(path)?;
        Ok(Detections {
            image_id: u32_column(&df, "image_id", path)?,
            x: f64_column(&df, "x", path)?,
            y: f64_column(&df, "y", path)?,
            score: f64_column(&df, "score", path)?,
        })
    }

    /// The detections of one image as evaluation points.
    /// Fails on the first detection whose centre is not finite or whose score is not a
    /// probability in [0, 1] (NaN from a diverged model, a logit written as a score), naming the
    /// file, the image (`name_of` its id), the detection's index within the image and its place.
    pub fn check(&self, path: &Path, name_of: impl Fn(u32) -> String) -> Result<(), StageError> {
        let mut per_image: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for i in 0..self.score.len() {
            let id = self.image_id[i];
            let k = per_image.entry(id).or_default();
            let (x, y, s) = (self.x[i], self.y[i], self.score[i]);
            let problem = if !(x.is_finite() && y.is_finite()) {
                Some(format!("its centre ({x}, {y}) is not finite"))
            } else if !(0.0..=1.0).contains(&s) {
                Some(format!("score {s} is not a probability in [0, 1]"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(StageError::msg(format!(
                    "{}: image {id} ({}), detection {k} (row {i}) at ({x:.1}, {y:.1}) px: {problem}",
                    path.display(),
                    name_of(id)
                )));
            }
            *k += 1;
        }
        Ok(())
    }

    pub fn of_image(&self, id: u32) -> Vec<midog_eval::Detection> {
        (0..self.x.len())
            .filter(|&i| self.image_id[i] == id)
            .map(|i| midog_eval::Detection { x: self.x[i], y: self.y[i], score: self.score[i] })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.parquet");
        let mut c = Candidates::default();
        c.push(3, 1, [1.0, 2.0, 51.0, 52.0], 0.9);
        c.push(4, 0, [5.0, 6.0, 55.0, 56.0], 0.2);
        c.write(&p).unwrap();
        assert_eq!(Candidates::read(&p).unwrap(), c);
    }
}
