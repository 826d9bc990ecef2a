//! `[run]` and the back-ends' tables of an experiment, typed:
//!
//! ```toml
//! [run]
//! executor = "slurm"     # where stages run: "local" (default) or "slurm"; --executor overrides it
//!
//! [slurm]                # the Slurm back-end's settings (see slurm/config.rs)
//! partition = "gpu"
//! ```
//!
//! Every key is checked on every command that loads the experiment, whichever back-end runs it:
//! an unknown table or key, or a value of the wrong type, is an error naming the file, line and
//! column, with a "did you mean".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::slurm::config::SlurmConfig;
use crate::spec::{Experiment, SPEC_TABLES, SpecError, did_you_mean};

/// Where stages run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Child processes on this machine, within `--jobs` CPU slots and its GPUs.
    #[default]
    Local,
    /// One Slurm batch job per stage (settings in `[slurm]`).
    Slurm,
}

/// Top-level experiment tables that belong to a back-end.
pub const BACKEND_TABLES: &[&str] = &["slurm"];

/// The `[run]` table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct RunTable {
    /// Where stages run: `local` (child processes on this machine) or `slurm` (one batch job
    /// per stage, settings in `[slurm]`).
    executor: ExecutorKind,
}

/// How an experiment asks to be run.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// `[run] executor` (`local` when absent).
    pub executor: ExecutorKind,
    /// `[slurm]` (Slurm's defaults when absent).
    pub slurm: SlurmConfig,
}

impl RunConfig {
    /// Types `[run]` and every back-end's table of `exp`; `kinds` are the stage kinds the binary
    /// knows (back-end tables may set values per kind).
    pub fn from_experiment<'a>(exp: &Experiment, kinds: impl IntoIterator<Item = &'a str>) -> Result<Self, SpecError> {
        let known: Vec<&str> = SPEC_TABLES.iter().chain(["run"].iter()).chain(BACKEND_TABLES).copied().collect();
        let at = |path: &[&str]| exp.sources().key(&path.iter().map(|s| s.to_string()).collect::<Vec<_>>()).cloned();
        for (name, value) in &exp.tables {
            if !known.contains(&name.as_str()) {
                let err = SpecError::at(at(&[name]).as_ref(), &exp.path, format!("unknown table `{name}`"));
                return Err(match did_you_mean(name, known.iter().copied()) {
                    Some(s) => err.with_help(format!("did you mean `{s}`?")),
                    None => err.with_help(format!("an experiment has the tables {}", known.join(", "))),
                });
            }
            if !value.is_table() {
                return Err(SpecError::at(
                    at(&[name]).as_ref(),
                    &exp.path,
                    format!("`{name}` must be a table, e.g. [{name}]"),
                ));
            }
        }
        let table = |name: &str| exp.tables.get(name).and_then(|v| v.as_table());
        let run: RunTable = match table("run") {
            None => RunTable::default(),
            Some(t) => crate::typed::from_table(t).map_err(|e| {
                let path: Vec<&str> = std::iter::once("run").chain(e.path.iter().map(|s| s.as_str())).collect();
                let message = match e.path.as_slice() {
                    [_] if e.message.starts_with("unknown key") => format!("{} in [run]", e.message),
                    _ => format!("`{}`: {}", path.join("."), e.message),
                };
                let mut err = SpecError::at(at(&path).as_ref(), &exp.path, message);
                err.help = e.help;
                err
            })?,
        };
        let slurm = SlurmConfig::from_table(table("slurm"), exp, kinds)?;
        Ok(RunConfig { executor: run.executor, slurm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RunConfig, SpecError> {
        load_raw(&format!("[stages.train]\n{text}"))
    }

    fn load_raw(text: &str) -> Result<RunConfig, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exp.toml");
        std::fs::write(&p, text).unwrap();
        RunConfig::from_experiment(&Experiment::load(&p)?, ["train"])
    }

    #[test]
    fn run_is_typed_and_located() {
        assert_eq!(load("").unwrap().executor, ExecutorKind::Local);
        assert_eq!(load("[run]\nexecutor = \"slurm\"\n").unwrap().executor, ExecutorKind::Slurm);
        let e = load("[run]\nexecuter = \"slurm\"\n").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| (l.line, l.column)), Some((3, 1)), "{e}");
        assert_eq!(e.message, "unknown key `executer` in [run]");
        assert_eq!(e.help.as_deref(), Some("did you mean `executor`?"));
        let e = load("[run]\nexecutor = \"slrum\"\n").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| l.line), Some(3), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean `slurm`?"), "{e}");
        let e = load("[run]\nexecutor = 3\n").unwrap_err();
        assert!(e.message.starts_with("`run.executor`"), "{e}");
    }

    #[test]
    fn unknown_top_level_tables_suggest_a_fix() {
        let e = load("[stagse.train]\n").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `stages`?"));
        assert_eq!(e.location.unwrap().line, 2);
        let e = load("[slrum]\npartition = \"gpu\"\n").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `slurm`?"));
        let e = load_raw("run = 1\n[stages.train]\n").unwrap_err();
        assert!(e.message.contains("must be a table"), "{e}");
    }
}
