//! Loading experiment files: TOML parsing with positions, and `extends = "base.toml"` deep merge.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::SpecError;
use super::source::{SourceFile, SourceMap, read_source};

/// A fully merged experiment document and where each value came from.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub table: toml::Table,
    pub sources: SourceMap,
    /// Every file that contributed (the experiment and its bases).
    pub files: Vec<PathBuf>,
}

impl Document {
    pub fn load(path: &Path) -> Result<Document, SpecError> {
        let mut chain = Vec::new();
        load_with_bases(path, &mut chain)
    }
}

fn parse(file: &Arc<SourceFile>) -> Result<toml::Table, SpecError> {
    toml::from_str::<toml::Table>(&file.text).map_err(|e| {
        let location = e.span().map(|s| file.location(s.start));
        let message = e.message().trim().to_string();
        SpecError::at(location.as_ref(), &file.path, format!("invalid TOML: {message}"))
    })
}

fn load_with_bases(path: &Path, chain: &mut Vec<PathBuf>) -> Result<Document, SpecError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if chain.contains(&canonical) {
        let names: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
        return Err(SpecError::new(
            path,
            format!("`extends` forms a loop: {} → {}", names.join(" → "), path.display()),
        ));
    }
    chain.push(canonical);
    let file = read_source(path).map_err(|e| {
        SpecError::new(path, format!("cannot read experiment file: {e}"))
            .with_help("check the path; experiment files usually live in experiments/")
    })?;
    let mut table = parse(&file)?;
    let mut sources = SourceMap::index_document(&file);
    let mut files = vec![path.to_path_buf()];

    // The experiment's own `extends` is read from the [experiment] table.
    let extends = table.get("experiment").and_then(|e| e.as_table()).and_then(|e| e.get("extends")).cloned();
    if let Some(extends) = extends {
        let key_path = vec!["experiment".to_string(), "extends".to_string()];
        let Some(base_rel) = extends.as_str() else {
            return Err(SpecError::at(
                sources.value(&key_path),
                path,
                "`extends` must be a string: the path of a base experiment file",
            ));
        };
        let base_path = path.parent().unwrap_or(Path::new(".")).join(base_rel);
        if !base_path.exists() {
            return Err(SpecError::at(
                sources.value(&key_path),
                path,
                format!("`extends` names {}, which does not exist", base_path.display()),
            )
            .with_help("the path is relative to the file that contains `extends`"));
        }
        let base = load_with_bases(&base_path, chain)?;
        if let Some(exp) = table.get_mut("experiment").and_then(|e| e.as_table_mut()) {
            exp.remove("extends");
        }
        let mut merged = base.table;
        deep_merge(&mut merged, table);
        table = merged;
        let mut merged_sources = base.sources;
        merged_sources.extend(sources);
        sources = merged_sources;
        files.extend(base.files);
    }
    chain.pop();
    Ok(Document { path: path.to_path_buf(), table, sources, files })
}

/// Merges `over` into `base`: tables merge key by key, everything else is replaced.
pub fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_merges_tables_deeply_and_child_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "[experiment]\nname = \"base\"\n[stages.train]\nlr = 1e-4\nepochs = 10\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("child.toml"),
            "[experiment]\nname = \"child\"\nextends = \"base.toml\"\n[stages.train]\nepochs = 20\n",
        )
        .unwrap();
        let doc = Document::load(&dir.path().join("child.toml")).unwrap();
        let train = doc.table["stages"]["train"].as_table().unwrap();
        assert_eq!(train["lr"].as_float(), Some(1e-4));
        assert_eq!(train["epochs"].as_integer(), Some(20));
        assert_eq!(doc.table["experiment"]["name"].as_str(), Some("child"));
        let p: Vec<String> = ["stages", "train", "epochs"].iter().map(|s| s.to_string()).collect();
        assert!(doc.sources.key(&p).unwrap().file.ends_with("child.toml"));
        let p: Vec<String> = ["stages", "train", "lr"].iter().map(|s| s.to_string()).collect();
        assert!(doc.sources.key(&p).unwrap().file.ends_with("base.toml"));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[experiment]\nname = \"x\"\n[stages.train\nlr = 1\n").unwrap();
        let err = Document::load(&p).unwrap_err();
        let loc = err.location.clone().unwrap();
        assert_eq!(loc.line, 3, "{err}");
        assert!(err.to_string().contains("invalid TOML"), "{err}");
    }

    #[test]
    fn extends_loops_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "[experiment]\nextends = \"b.toml\"\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "[experiment]\nextends = \"a.toml\"\n").unwrap();
        let err = Document::load(&dir.path().join("a.toml")).unwrap_err();
        assert!(err.message.contains("loop"), "{err}");
    }
}
