//! `[sweep]`: one experiment file, several variants.
//!
//! ```toml
//! [sweep]
//! "stages.train.lr" = [1e-4, 3e-4]          # an axis: a dotted key and its values
//! "stages.train.epochs" = [10, 50]          # axes multiply: 4 variants
//! zip = [["stages.train.lr", "stages.train.epochs"]]   # …unless zipped: 2 variants
//!
//! [sweep.variants.r50]                       # named variants, each a set of overrides
//! "stages.train.backbone" = "resnet50"
//!
//! [sweep]
//! replicates = 3                             # every variant 3 times, seeds offset by 0, 1, 2
//! ```
//!
//! Named variants multiply with the axes. Variant names are readable and stable:
//! `lr=3e-4,epochs=50`, the user's own names, or `r50/lr=3e-4` for both.
//!
//! `replicates = N` (N ≥ 2; 1 is the experiment as written, so a file can turn off the
//! replicates of a base it extends) adds the innermost axis [`REPLICATE_AXIS`] with the values
//! 0 … N−1: replicate
//! *r* adds *r* to every parameter the stage kinds declare as their random seeds
//! (`StageDef::REPLICATE_SEEDS`), so stages that draw random numbers run once per replicate and
//! the others (those without seeds, e.g. a data split) stay shared. Replicate 0 is the
//! experiment as written, and shares its cache with a run without replicates.

use std::collections::BTreeSet;

use super::error::{SpecError, did_you_mean};
use super::source::{Location, SourceMap};

/// One override of a value of the experiment.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dotted path inside the experiment, e.g. `["stages", "train", "lr"]`.
    pub path: Vec<String>,
    pub value: toml::Value,
    /// Where the override was written (the sweep entry).
    pub location: Option<Location>,
}

/// A swept key and the value it takes in one variant; `pipeline export` makes a column of each.
#[derive(Debug, Clone, PartialEq)]
pub struct SweptValue {
    /// Dotted path of the key, e.g. `stages.train.lr`.
    pub key: String,
    pub value: toml::Value,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub overrides: Vec<Override>,
    pub swept: Vec<SweptValue>,
    /// The replicate index (`[sweep] replicates = N`), added to the stages' seed params.
    pub replicate: Option<u32>,
}

impl Variant {
    /// The single variant of an experiment without `[sweep]`.
    pub fn base() -> Variant {
        Variant { name: DEFAULT_VARIANT.to_string(), overrides: Vec::new(), swept: Vec::new(), replicate: None }
    }

    /// The value of a swept key (an axis's dotted key, `variant` or [`REPLICATE_AXIS`]).
    pub fn value_of(&self, key: &str) -> Option<&toml::Value> {
        self.swept.iter().find(|s| s.key == key).map(|s| &s.value)
    }
}

pub const DEFAULT_VARIANT: &str = "default";

/// The swept key of `[sweep] replicates = N`; each variant's value is its replicate index.
pub const REPLICATE_AXIS: &str = "replicate";

struct Axis {
    key: String,
    path: Vec<String>,
    values: Vec<toml::Value>,
    location: Option<Location>,
}

/// Expands `[sweep]` into variants. `file` names the experiment in errors.
pub fn expand(
    sweep: Option<&toml::Table>,
    sources: &SourceMap,
    file: &std::path::Path,
    stage_names: &BTreeSet<String>,
) -> Result<Vec<Variant>, SpecError> {
    let Some(sweep) = sweep else { return Ok(vec![Variant::base()]) };
    let here = |path: &[&str]| {
        let p: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        sources.key(&p).cloned()
    };

    let mut axes: Vec<Axis> = Vec::new();
    let mut zips: Vec<Vec<String>> = Vec::new();
    let mut named: Vec<(String, Vec<Override>)> = Vec::new();
    let mut replicates: Option<u32> = None;

    for (k, v) in sweep {
        match k.as_str() {
            "replicates" => {
                let loc = here(&["sweep", "replicates"]);
                let n = v.as_integer().ok_or_else(|| {
                    SpecError::at(loc.as_ref(), file, "`replicates` must be a whole number, e.g. replicates = 3")
                })?;
                if n < 1 {
                    return Err(SpecError::at(
                        loc.as_ref(),
                        file,
                        format!("`replicates = {n}`: there must be at least 1 replicate"),
                    )
                    .with_help("replicates = 3 trains every variant with three seeds; leave the key out for one"));
                }
                let n = u32::try_from(n).map_err(|_| {
                    SpecError::at(loc.as_ref(), file, format!("`replicates = {n}` is more than anyone can run"))
                })?;
                // One replicate is the experiment as written: no axis, the names stay.
                replicates = (n > 1).then_some(n);
            }
            "zip" => {
                let groups = v.as_array().ok_or_else(|| {
                    SpecError::at(here(&["sweep", "zip"]).as_ref(), file, "`zip` must be a list of lists of swept keys")
                })?;
                for g in groups {
                    let keys: Option<Vec<String>> =
                        g.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect());
                    match keys {
                        Some(keys) if keys.len() >= 2 => zips.push(keys),
                        _ => {
                            return Err(SpecError::at(
                                here(&["sweep", "zip"]).as_ref(),
                                file,
                                "each `zip` group must list at least two swept keys, e.g. [\"stages.train.lr\", \"stages.train.epochs\"]",
                            ));
                        }
                    }
                }
            }
            "variants" => {
                let table = v.as_table().ok_or_else(|| {
                    SpecError::at(
                        here(&["sweep", "variants"]).as_ref(),
                        file,
                        "`variants` must be a table of named variants",
                    )
                })?;
                for (name, overrides) in table {
                    let Some(overrides) = overrides.as_table() else {
                        return Err(SpecError::at(
                            here(&["sweep", "variants", name]).as_ref(),
                            file,
                            format!("variant `{name}` must be a table of overrides"),
                        ));
                    };
                    let mut list = Vec::new();
                    let mut prefix = vec!["sweep".to_string(), "variants".to_string(), name.clone()];
                    flatten(overrides, &mut Vec::new(), &mut prefix, sources, &mut |path, value, loc| {
                        list.push(Override { path, value: value.clone(), location: loc });
                    });
                    for o in &list {
                        check_target(&o.path, o.location.as_ref(), file, stage_names)?;
                    }
                    named.push((name.clone(), list));
                }
                // TOML tables forget their order; list named variants as the file writes them.
                named.sort_by_key(|(name, _)| {
                    here(&["sweep", "variants", name.as_str()]).map(|l| (l.file.clone(), l.line, l.column))
                });
            }
            _ => {
                let mut prefix = vec!["sweep".to_string()];
                let mut found = Vec::new();
                match v {
                    toml::Value::Table(t) => {
                        let mut rel = vec![k.clone()];
                        prefix.push(k.clone());
                        flatten(t, &mut rel, &mut prefix, sources, &mut |path, value, loc| {
                            found.push((path, value.clone(), loc));
                        });
                    }
                    other => {
                        let loc = sources.key(&[String::from("sweep"), k.clone()]).cloned();
                        found.push((k.split('.').map(String::from).collect(), other.clone(), loc));
                    }
                }
                for (path, value, loc) in found {
                    let Some(values) = value.as_array() else {
                        return Err(SpecError::at(
                            loc.as_ref(),
                            file,
                            format!("swept key `{}` must list its values, e.g. [1e-4, 3e-4]", path.join(".")),
                        ));
                    };
                    if values.is_empty() {
                        return Err(SpecError::at(
                            loc.as_ref(),
                            file,
                            format!("swept key `{}` has no values", path.join(".")),
                        ));
                    }
                    check_target(&path, loc.as_ref(), file, stage_names)?;
                    axes.push(Axis { key: path.join("."), path, values: values.clone(), location: loc });
                }
            }
        }
    }
    // Axes in the order they were written.
    axes.sort_by_key(|a| a.location.as_ref().map(|l| (l.file.clone(), l.line, l.column)));

    // Zip groups become one compound axis.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut zipped = BTreeSet::new();
    for z in &zips {
        let mut idx = Vec::new();
        for key in z {
            let Some(i) = axes.iter().position(|a| &a.key == key) else {
                let help = did_you_mean(key, axes.iter().map(|a| a.key.as_str()))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "every key in a zip group must also be a swept key in [sweep]".into());
                return Err(SpecError::at(
                    here(&["sweep", "zip"]).as_ref(),
                    file,
                    format!("zip names `{key}`, which is not swept"),
                )
                .with_help(help));
            };
            if !zipped.insert(i) {
                return Err(SpecError::at(
                    here(&["sweep", "zip"]).as_ref(),
                    file,
                    format!("`{key}` is in two zip groups"),
                ));
            }
            idx.push(i);
        }
        let len = axes[idx[0]].values.len();
        if idx.iter().any(|&i| axes[i].values.len() != len) {
            let lens: Vec<String> =
                idx.iter().map(|&i| format!("{} has {}", axes[i].key, axes[i].values.len())).collect();
            return Err(SpecError::at(
                here(&["sweep", "zip"]).as_ref(),
                file,
                format!("zipped keys must have as many values each: {}", lens.join(", ")),
            ));
        }
        groups.push(idx);
    }
    for i in 0..axes.len() {
        if !zipped.contains(&i) {
            groups.push(vec![i]);
        }
    }
    groups.sort_by_key(|g| g[0]);

    let labels = short_labels(&axes);
    if let Some(a) =
        axes.iter().zip(&labels).find(|(_, l)| replicates.is_some() && *l == REPLICATE_AXIS).map(|(a, _)| a)
    {
        return Err(SpecError::at(
            a.location.as_ref(),
            file,
            format!("`{}` clashes with the replicate axis name `{REPLICATE_AXIS}`", a.key),
        ));
    }
    // Cartesian product over groups; within a group, values move together.
    let mut combos: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
    for g in &groups {
        let n = axes[g[0]].values.len();
        let mut next = Vec::new();
        for c in &combos {
            for j in 0..n {
                let mut c = c.clone();
                c.extend(g.iter().map(|&i| (i, j)));
                next.push(c);
            }
        }
        combos = next;
    }

    let bases: Vec<(Option<String>, Vec<Override>)> = if named.is_empty() {
        vec![(None, Vec::new())]
    } else {
        named.into_iter().map(|(n, o)| (Some(n), o)).collect()
    };
    let replicate_values: Vec<Option<u32>> = match replicates {
        None => vec![None],
        Some(n) => (0..n).map(Some).collect(),
    };
    let mut variants = Vec::new();
    for (name, base_overrides) in &bases {
        for (combo, replicate) in combos.iter().flat_map(|c| replicate_values.iter().map(move |r| (c, *r))) {
            let mut overrides = base_overrides.clone();
            let mut swept = Vec::new();
            let mut parts = Vec::new();
            let mut sorted = combo.clone();
            sorted.sort();
            for (i, j) in sorted {
                let a = &axes[i];
                overrides.push(Override {
                    path: a.path.clone(),
                    value: a.values[j].clone(),
                    location: a.location.clone(),
                });
                swept.push(SweptValue { key: a.key.clone(), value: a.values[j].clone() });
                parts.push(format!("{}={}", labels[i], display_value(&a.values[j])));
            }
            // Innermost: the replicates of one recipe sit next to each other.
            if let Some(r) = replicate {
                swept.push(SweptValue { key: REPLICATE_AXIS.into(), value: toml::Value::Integer(i64::from(r)) });
                parts.push(format!("{REPLICATE_AXIS}={r}"));
            }
            let axes_name = parts.join(",");
            let vname = match (name, axes_name.is_empty()) {
                (Some(n), true) => n.clone(),
                (Some(n), false) => format!("{n}/{axes_name}"),
                (None, false) => axes_name,
                (None, true) => DEFAULT_VARIANT.to_string(),
            };
            if let Some(n) = name {
                swept.insert(0, SweptValue { key: "variant".into(), value: toml::Value::String(n.clone()) });
            }
            variants.push(Variant { name: vname, overrides, swept, replicate });
        }
    }
    Ok(variants)
}

/// Receives each leaf of a flattened table: its dotted path, value and location.
type LeafSink<'a> = dyn FnMut(Vec<String>, &toml::Value, Option<Location>) + 'a;

fn flatten(
    table: &toml::Table,
    rel: &mut Vec<String>,
    abs: &mut Vec<String>,
    sources: &SourceMap,
    out: &mut LeafSink<'_>,
) {
    for (k, v) in table {
        abs.push(k.clone());
        let segs: Vec<String> = k.split('.').map(String::from).collect();
        let n = segs.len();
        rel.extend(segs);
        match v {
            toml::Value::Table(t) => flatten(t, rel, abs, sources, out),
            other => out(rel.clone(), other, sources.key(abs).cloned()),
        }
        rel.truncate(rel.len() - n);
        abs.pop();
    }
}

fn check_target(
    path: &[String],
    loc: Option<&Location>,
    file: &std::path::Path,
    stage_names: &BTreeSet<String>,
) -> Result<(), SpecError> {
    let dotted = path.join(".");
    if path.len() < 3 || path[0] != "stages" {
        return Err(SpecError::at(
            loc,
            file,
            format!("swept key `{dotted}` must name a stage parameter: `stages.NAME.PARAM`"),
        ));
    }
    if !stage_names.contains(&path[1]) {
        let help = did_you_mean(&path[1], stage_names.iter().map(|s| s.as_str()))
            .map(|s| format!("did you mean `stages.{s}`?"))
            .unwrap_or_else(|| {
                format!("the stages are: {}", stage_names.iter().cloned().collect::<Vec<_>>().join(", "))
            });
        return Err(SpecError::at(
            loc,
            file,
            format!("swept key `{dotted}` names stage `{}`, which does not exist", path[1]),
        )
        .with_help(help));
    }
    if path[2] == "kind" || path[2] == "needs" {
        return Err(SpecError::at(
            loc,
            file,
            format!("`{dotted}` cannot be swept: sweeps change parameters, not the shape of the DAG"),
        ));
    }
    Ok(())
}

/// Shortest unambiguous label per axis: the parameter name, or `stage.param` when two axes share it.
fn short_labels(axes: &[Axis]) -> Vec<String> {
    axes.iter()
        .map(|a| {
            let last = a.path.last().cloned().unwrap_or_default();
            let clash = axes.iter().filter(|b| b.path.last() == a.path.last()).count() > 1;
            if clash { a.path[1..].join(".") } else { last }
        })
        .collect()
}

/// A value as it appears in variant names: `3e-4`, `50`, `resnet50`, `true`.
pub fn display_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => {
            let a = f.abs();
            if *f != 0.0 && !(1e-2..1e5).contains(&a) { format!("{f:e}") } else { format!("{f}") }
        }
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => format!("[{}]", items.iter().map(display_value).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::spec::source::SourceFile;

    fn expand_text(text: &str) -> Result<Vec<Variant>, SpecError> {
        let file = Arc::new(SourceFile::new("e.toml".into(), text.to_string()));
        let sources = SourceMap::index_document(&file);
        let table: toml::Table = toml::from_str(text).unwrap();
        let names: BTreeSet<String> = ["train", "nms"].iter().map(|s| s.to_string()).collect();
        expand(table.get("sweep").and_then(|s| s.as_table()), &sources, Path::new("e.toml"), &names)
    }

    fn names(v: &[Variant]) -> Vec<&str> {
        v.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn no_sweep_is_one_default_variant() {
        let v = expand_text("[stages.train]\n").unwrap();
        assert_eq!(names(&v), ["default"]);
    }

    #[test]
    fn axes_multiply_in_written_order() {
        let v =
            expand_text("[sweep]\n\"stages.train.lr\" = [1e-4, 3e-4]\n\"stages.train.epochs\" = [10, 50]\n").unwrap();
        assert_eq!(names(&v), ["lr=1e-4,epochs=10", "lr=1e-4,epochs=50", "lr=3e-4,epochs=10", "lr=3e-4,epochs=50"]);
        assert_eq!(v[3].swept[0], SweptValue { key: "stages.train.lr".into(), value: toml::Value::Float(3e-4) });
    }

    #[test]
    fn zip_groups_move_together() {
        let v = expand_text(
            "[sweep]\n\"stages.train.lr\" = [1e-4, 3e-4]\n\"stages.train.epochs\" = [10, 50]\nzip = [[\"stages.train.lr\", \"stages.train.epochs\"]]\n",
        )
        .unwrap();
        assert_eq!(names(&v), ["lr=1e-4,epochs=10", "lr=3e-4,epochs=50"]);
    }

    #[test]
    fn named_variants_use_the_users_names_in_file_order_and_multiply_with_axes() {
        let v = expand_text(
            "[sweep]\n\"stages.nms.iou\" = [0.3, 0.5]\n[sweep.variants.small]\n\"stages.train.epochs\" = 5\n[sweep.variants.big]\nstages.train.epochs = 50\n",
        )
        .unwrap();
        assert_eq!(names(&v), ["small/iou=0.3", "small/iou=0.5", "big/iou=0.3", "big/iou=0.5"]);
        assert_eq!(v[0].overrides[0].path, ["stages", "train", "epochs"]);
        assert_eq!(v[0].overrides[0].value.as_integer(), Some(5));
    }

    #[test]
    fn bad_sweeps_are_located_errors() {
        let e = expand_text("[sweep]\n\"stages.trian.lr\" = [1]\n").unwrap_err();
        assert_eq!(e.location.as_ref().unwrap().line, 2);
        assert!(e.help.as_deref().unwrap().contains("stages.train"), "{e}");
        let e = expand_text("[sweep]\n\"stages.train.lr\" = 1\n").unwrap_err();
        assert!(e.message.contains("must list its values"), "{e}");
        let e = expand_text("[sweep]\n\"stages.train.lr\" = [1, 2]\n\"stages.train.epochs\" = [1]\nzip = [[\"stages.train.lr\", \"stages.train.epochs\"]]\n")
            .unwrap_err();
        assert!(e.message.contains("as many values"), "{e}");
    }

    #[test]
    fn replicates_are_the_innermost_axis() {
        let v = expand_text("[sweep]\n\"stages.train.lr\" = [1, 2]\nreplicates = 2\n").unwrap();
        assert_eq!(names(&v), ["lr=1,replicate=0", "lr=1,replicate=1", "lr=2,replicate=0", "lr=2,replicate=1"]);
        assert_eq!(v[3].replicate, Some(1));
        assert_eq!(v[3].value_of(REPLICATE_AXIS), Some(&toml::Value::Integer(1)));
        let v = expand_text("[sweep]\nreplicates = 3\n").unwrap();
        assert_eq!(names(&v), ["replicate=0", "replicate=1", "replicate=2"]);
        assert!(v[0].overrides.is_empty(), "replicates override no written value");
        // One replicate: the experiment as written (a file can turn off its base's replicates).
        let v = expand_text("[sweep]\n\"stages.train.lr\" = [1, 2]\nreplicates = 1\n").unwrap();
        assert_eq!(names(&v), ["lr=1", "lr=2"]);
        assert_eq!(v[0].replicate, None);
    }

    #[test]
    fn bad_replicates_are_located_errors() {
        let e = expand_text("[stages.train]\n[sweep]\nreplicates = 0\n").unwrap_err();
        assert_eq!(e.location.as_ref().unwrap().line, 3, "{e}");
        assert!(e.message.contains("at least 1 replicate"), "{e}");
        let e = expand_text("[sweep]\nreplicates = \"three\"\n").unwrap_err();
        assert!(e.message.contains("whole number"), "{e}");
        let e = expand_text("[sweep]\nreplicates = -2\n").unwrap_err();
        assert!(e.to_string().contains("e.toml:2:1"), "{e}");
    }

    #[test]
    fn labels_disambiguate_clashing_names() {
        let v = expand_text("[sweep]\n\"stages.train.lr\" = [1]\n\"stages.nms.lr\" = [2]\n").unwrap();
        assert_eq!(names(&v), ["train.lr=1,nms.lr=2"]);
    }
}
