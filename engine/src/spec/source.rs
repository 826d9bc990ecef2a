//! Where each value of an experiment came from: file, line and column, so that every error
//! can point at the exact place to fix.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded experiment file and its text (kept to turn byte offsets into lines and columns).
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { path, text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    pub fn location(self: &Arc<Self>, offset: usize) -> Location {
        let (line, column) = self.line_col(offset);
        Location { file: self.path.clone(), line, column }
    }
}

/// A position in an experiment file, printed as `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Dotted key path → location of its key and of its value. Later files (an `extends` child,
/// a sweep override) replace the entries of earlier ones.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    keys: HashMap<String, Location>,
    values: HashMap<String, Location>,
}

impl SourceMap {
    pub fn insert(&mut self, path: &[String], key: Location, value: Location) {
        let joined = join_path(path);
        self.keys.insert(joined.clone(), key);
        self.values.insert(joined, value);
    }

    /// Location of the key at `path`, or of its nearest enclosing table.
    /// Location of the key at exactly `path` (no enclosing table).
    pub fn exact_key(&self, path: &[String]) -> Option<&Location> {
        self.keys.get(&join_path(path))
    }

    pub fn key(&self, path: &[String]) -> Option<&Location> {
        (0..=path.len()).rev().find_map(|n| self.keys.get(&join_path(&path[..n])))
    }

    /// Location of the value at `path`, or of its nearest enclosing table.
    pub fn value(&self, path: &[String]) -> Option<&Location> {
        (0..=path.len()).rev().find_map(|n| self.values.get(&join_path(&path[..n])))
    }

    /// Every key strictly under `prefix`, as (the path after the prefix, dotted; the key's location).
    pub fn keys_under(&self, prefix: &[String]) -> Vec<(String, &Location)> {
        let head = format!("{}.", join_path(prefix));
        let mut out: Vec<(String, &Location)> =
            self.keys.iter().filter_map(|(k, l)| k.strip_prefix(&head).map(|rest| (rest.to_string(), l))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn extend(&mut self, other: SourceMap) {
        self.keys.extend(other.keys);
        self.values.extend(other.values);
    }

    /// Records the spans of every key of a parsed document.
    pub fn index_document(file: &Arc<SourceFile>) -> SourceMap {
        let mut map = SourceMap::default();
        if let Ok(doc) = toml::de::DeTable::parse(&file.text) {
            let mut path = Vec::new();
            walk_table(file, doc.get_ref(), &mut path, &mut map);
        }
        map
    }
}

fn walk_table(file: &Arc<SourceFile>, table: &toml::de::DeTable<'_>, path: &mut Vec<String>, map: &mut SourceMap) {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        map.insert(path, file.location(k.span().start), file.location(v.span().start));
        walk_value(file, v.get_ref(), path, map);
        path.pop();
    }
}

fn walk_value(file: &Arc<SourceFile>, value: &toml::de::DeValue<'_>, path: &mut Vec<String>, map: &mut SourceMap) {
    match value {
        toml::de::DeValue::Table(t) => walk_table(file, t, path, map),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                path.push(i.to_string());
                let loc = file.location(item.span().start);
                map.insert(path, loc.clone(), loc);
                walk_value(file, item.get_ref(), path, map);
                path.pop();
            }
        }
        _ => {}
    }
}

pub fn join_path(path: &[String]) -> String {
    path.join(".")
}

/// Reads a file for the spec loader, naming it in the error.
pub fn read_source(path: &Path) -> std::io::Result<Arc<SourceFile>> {
    let text = std::fs::read_to_string(path)?;
    Ok(Arc::new(SourceFile::new(path.to_path_buf(), text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let f = SourceFile::new("x.toml".into(), "a = 1\nbé = 2\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        assert_eq!(f.line_col(11), (2, 5));
    }

    #[test]
    fn spans_of_nested_keys_are_indexed() {
        let f =
            Arc::new(SourceFile::new("e.toml".into(), "[stages.train]\nlr = 1e-4\n\n[stages.nms]\niou = 0.4\n".into()));
        let map = SourceMap::index_document(&f);
        let p = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(map.key(&p("stages.train.lr")).unwrap().line, 2);
        assert_eq!(map.value(&p("stages.nms.iou")).unwrap().to_string(), "e.toml:5:7");
        // Unknown paths fall back to the enclosing table.
        assert_eq!(map.key(&p("stages.nms.radius")).unwrap().line, 4);
    }
}
