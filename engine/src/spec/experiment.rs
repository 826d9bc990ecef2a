//! The typed experiment: `[experiment]`, `[stages.NAME]` tables and `[sweep]`. Every other
//! top-level table (`[run]`, and the tables of the execution back-ends such as `[slurm]`) is
//! kept as written for `exec::RunConfig`, which types it and rejects names it does not know.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::document::Document;
use super::error::{SpecError, did_you_mean};
use super::source::{Location, SourceMap};
use super::sweep::{self, Variant};

/// The top-level tables this module types; `exec::RunConfig` types the others.
pub const SPEC_TABLES: &[&str] = &["experiment", "stages", "sweep"];
const EXPERIMENT_KEYS: &[&str] = &["name", "description", "extends"];

/// One `[stages.NAME]` table before its parameters are typed by its stage kind.
#[derive(Debug, Clone)]
pub struct StageTable {
    pub name: String,
    /// Stage kind; defaults to the table's name.
    pub kind: String,
    /// Explicit upstream stage names; `None` means the kind's standard upstream.
    pub needs: Option<Vec<String>>,
    /// Everything else in the table: the stage's parameters.
    pub params: toml::Table,
}

#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// Directory of the experiment file; relative paths in params resolve against it.
    pub dir: PathBuf,
    pub name: String,
    pub description: String,
    pub document: Document,
    pub variants: Vec<Variant>,
    /// Every other top-level key (`run`, a back-end's table), in file order, as written.
    pub tables: IndexMap<String, toml::Value>,
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, SpecError> {
        let document = Document::load(path)?;
        let file = path.to_path_buf();
        let sources = &document.sources;
        let at = |p: &[&str]| -> Option<Location> {
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            sources.key(&p).cloned()
        };

        for key in SPEC_TABLES {
            if let Some(v) = document.table.get(*key)
                && !v.is_table()
            {
                return Err(SpecError::at(
                    at(&[key]).as_ref(),
                    &file,
                    format!("`{key}` must be a table, e.g. [{key}]"),
                ));
            }
        }

        let exp = document.table.get("experiment").and_then(|v| v.as_table()).cloned().unwrap_or_default();
        for key in exp.keys() {
            if !EXPERIMENT_KEYS.contains(&key.as_str()) {
                let mut err = SpecError::at(
                    at(&["experiment", key]).as_ref(),
                    &file,
                    format!("unknown key `{key}` in [experiment]"),
                );
                if let Some(s) = did_you_mean(key, EXPERIMENT_KEYS.iter().copied()) {
                    err = err.with_help(format!("did you mean `{s}`?"));
                }
                return Err(err);
            }
        }
        let string = |key: &str| -> Result<Option<String>, SpecError> {
            match exp.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(SpecError::at(
                    at(&["experiment", key]).as_ref(),
                    &file,
                    format!("`experiment.{key}` must be a string"),
                )),
            }
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "experiment".into());
        let name = string("name")?.unwrap_or(stem);
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(SpecError::at(
                at(&["experiment", "name"]).as_ref(),
                &file,
                format!("experiment name `{name}` must be non-empty, not start with a dot, and contain no slashes"),
            ));
        }
        let description = string("description")?.unwrap_or_default();

        let stage_names: BTreeSet<String> = document
            .table
            .get("stages")
            .and_then(|s| s.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        if stage_names.is_empty() {
            return Err(SpecError::new(&file, "the experiment has no stages")
                .with_help("add tables such as [stages.dataset] and [stages.split]"));
        }
        let variants =
            sweep::expand(document.table.get("sweep").and_then(|s| s.as_table()), sources, &file, &stage_names)?;
        let mut seen = BTreeSet::new();
        for v in &variants {
            if !seen.insert(v.name.clone()) {
                return Err(SpecError::new(&file, format!("two variants are both named `{}`", v.name)));
            }
        }

        let mut tables: Vec<(String, toml::Value)> = document
            .table
            .iter()
            .filter(|(k, _)| !SPEC_TABLES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tables.sort_by_key(|(k, _)| at(&[k]).map(|l| (l.file, l.line, l.column)));
        let tables = tables.into_iter().collect();
        let dir = path
            .parent()
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(Experiment { path: file, dir, name, description, document, variants, tables })
    }

    pub fn sources(&self) -> &SourceMap {
        &self.document.sources
    }

    /// The stage tables of one variant, its overrides applied, in file order.
    pub fn stage_tables(&self, variant: &Variant) -> Result<(IndexMap<String, StageTable>, SourceMap), SpecError> {
        let mut table = self.document.table.clone();
        let mut sources = self.document.sources.clone();
        for o in &variant.overrides {
            set_path(&mut table, &o.path, o.value.clone());
            if let Some(loc) = &o.location {
                sources.insert(&o.path, loc.clone(), loc.clone());
            }
        }
        let stages = table.get("stages").and_then(|s| s.as_table()).cloned().unwrap_or_default();
        let mut entries: Vec<(String, toml::Value)> = stages.into_iter().collect();
        let pos = |name: &str| {
            sources.key(&["stages".to_string(), name.to_string()]).map(|l| (l.file.clone(), l.line, l.column))
        };
        entries.sort_by_key(|(n, _)| pos(n));

        let mut out = IndexMap::new();
        for (name, value) in entries {
            let here = |k: &str| sources.key(&["stages".to_string(), name.clone(), k.to_string()]).cloned();
            let table_loc = sources.key(&["stages".to_string(), name.clone()]).cloned();
            let toml::Value::Table(mut params) = value else {
                return Err(SpecError::at(
                    table_loc.as_ref(),
                    &self.path,
                    format!("`stages.{name}` must be a table: [stages.{name}]"),
                ));
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(SpecError::at(
                    table_loc.as_ref(),
                    &self.path,
                    format!("stage name `{name}` may contain only letters, digits, `_` and `-`"),
                ));
            }
            let kind = match params.remove("kind") {
                None => name.clone(),
                Some(toml::Value::String(k)) => k,
                Some(_) => {
                    return Err(SpecError::at(
                        here("kind").as_ref(),
                        &self.path,
                        "`kind` must be a string naming a stage kind",
                    ));
                }
            };
            let needs = match params.remove("needs") {
                None => None,
                Some(toml::Value::Array(items)) => {
                    let mut names = Vec::new();
                    for item in items {
                        match item {
                            toml::Value::String(s) => names.push(s),
                            _ => {
                                return Err(SpecError::at(
                                    here("needs").as_ref(),
                                    &self.path,
                                    "`needs` must be a list of stage names",
                                ));
                            }
                        }
                    }
                    Some(names)
                }
                Some(toml::Value::String(s)) => Some(vec![s]),
                Some(_) => {
                    return Err(SpecError::at(
                        here("needs").as_ref(),
                        &self.path,
                        "`needs` must be a list of stage names",
                    ));
                }
            };
            out.insert(name.clone(), StageTable { name, kind, needs, params });
        }
        Ok((out, sources))
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("override paths are never empty");
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Experiment, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exp.toml");
        std::fs::write(&p, text).unwrap();
        Experiment::load(&p)
    }

    #[test]
    fn name_defaults_to_file_stem_and_kind_to_table_name() {
        let e = load("[stages.dataset]\n[stages.split]\nneeds = [\"dataset\"]\nseed = 3\n").unwrap();
        assert_eq!(e.name, "exp");
        let (stages, _) = e.stage_tables(&e.variants[0]).unwrap();
        let names: Vec<&str> = stages.keys().map(|s| s.as_str()).collect();
        assert_eq!(names, ["dataset", "split"]);
        assert_eq!(stages["split"].kind, "split");
        assert_eq!(stages["split"].needs.as_deref(), Some(&["dataset".to_string()][..]));
        assert_eq!(stages["split"].params["seed"].as_integer(), Some(3));
    }

    #[test]
    fn variant_overrides_apply_and_point_at_the_sweep() {
        let e = load("[stages.train]\nlr = 1.0\n[sweep]\n\"stages.train.lr\" = [2.0, 3.0]\n").unwrap();
        let (stages, sources) = e.stage_tables(&e.variants[1]).unwrap();
        assert_eq!(stages["train"].params["lr"].as_float(), Some(3.0));
        let p: Vec<String> = ["stages", "train", "lr"].iter().map(|s| s.to_string()).collect();
        assert_eq!(sources.key(&p).unwrap().line, 4);
    }
}
