//! Which files define a dataset and what they say about its domains, shared by the dataset
//! stage and `pipeline inspect` so both see the same dataset.
//!
//! The annotation file is `MIDOG++.json` or `MIDOG.json` in the root, whichever is there (both
//! there: an error asking to choose), or the file the `annotations` param names. The domain
//! table is the file the `domains` param names (e.g. MIDOG++'s `datasets_xvalidation.csv`),
//! relative to the root like the annotation file; without one, scanners come from the id ranges.

use std::path::{Path, PathBuf};

use midog_data::domains::{DatasetDomains, Sources};
use midog_data::midog::{MIDOG_JSON, MIDOGPP_JSON};
use midog_data::{DomainTable, MidogJson, ScannerMap};

/// The files of one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetFiles {
    pub json: PathBuf,
    /// How messages and the key name it: `MIDOG.json`, `MIDOG++.json`, or the param as written.
    pub json_name: String,
    pub table: Option<PathBuf>,
    /// The key's name of the table: `domains:<param as written>`.
    pub table_name: Option<String>,
}

/// Finds the annotation file and the domain table of the dataset in `dir`.
pub fn dataset_files(dir: &Path, annotations: Option<&Path>, domains: Option<&Path>) -> Result<DatasetFiles, String> {
    let (json, json_name) = match annotations {
        Some(a) => {
            let path = dir.join(a);
            if !path.is_file() {
                return Err(format!("annotations: no file {} (relative to `root`, {})", path.display(), dir.display()));
            }
            (path, a.display().to_string())
        }
        None => {
            let found: Vec<&str> = [MIDOGPP_JSON, MIDOG_JSON].into_iter().filter(|n| dir.join(n).is_file()).collect();
            match found.as_slice() {
                [one] => (dir.join(one), one.to_string()),
                [] => {
                    return Err(format!(
                        "no {MIDOG_JSON} or {MIDOGPP_JSON} in {}; `root` must hold the annotation file and the \
                         .tiff images, or `annotations` name the file (relative to `root`)",
                        dir.display()
                    ));
                }
                _ => {
                    return Err(format!(
                        "{} holds both {MIDOGPP_JSON} and {MIDOG_JSON}; choose one with \
                         annotations = \"{MIDOGPP_JSON}\" or annotations = \"{MIDOG_JSON}\"",
                        dir.display()
                    ));
                }
            }
        }
    };
    let table = match domains {
        Some(d) => {
            let path = dir.join(d);
            if !path.is_file() {
                return Err(format!(
                    "domains: no file {} (relative to `root`, {}); it is a table like MIDOG++'s \
                     datasets_xvalidation.csv",
                    path.display(),
                    dir.display()
                ));
            }
            Some((path, format!("domains:{}", d.display())))
        }
        None => None,
    };
    let (table, table_name) = table.map_or((None, None), |(p, n)| (Some(p), Some(n)));
    Ok(DatasetFiles { json, json_name, table, table_name })
}

/// The domain table, if the dataset has one (its own problems listed by line and column).
pub fn load_table(files: &DatasetFiles) -> Result<Option<DomainTable>, midog_data::DataError> {
    files.table.as_deref().map(DomainTable::load).transpose()
}

/// Assigns every image of `midog` its domains; every problem is returned, each naming its file.
pub fn domains_of(
    files: &DatasetFiles,
    midog: &MidogJson,
    table: Option<&DomainTable>,
    scanners: &ScannerMap,
    scanners_explicit: bool,
) -> Result<DatasetDomains, Vec<String>> {
    let json_name = files.json.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    midog_data::domains::assign(&Sources { json: midog, json_name: &json_name, table, scanners, scanners_explicit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_file_is_found_or_the_choice_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(dataset_files(d, None, None).unwrap_err().contains("no MIDOG.json or MIDOG++.json"));
        std::fs::write(d.join("MIDOG++.json"), "{}").unwrap();
        let f = dataset_files(d, None, None).unwrap();
        assert_eq!((f.json_name.as_str(), f.table.is_none()), ("MIDOG++.json", true));
        std::fs::write(d.join("MIDOG.json"), "{}").unwrap();
        let e = dataset_files(d, None, None).unwrap_err();
        assert!(e.contains("both") && e.contains("annotations = \"MIDOG.json\""), "{e}");
        let f = dataset_files(d, Some(Path::new("MIDOG.json")), None).unwrap();
        assert_eq!(f.json, d.join("MIDOG.json"));
        let e = dataset_files(d, Some(Path::new("MIDOG.json")), Some(Path::new("xval.csv"))).unwrap_err();
        assert!(e.contains("domains: no file") && e.contains("xval.csv"), "{e}");
        std::fs::write(d.join("xval.csv"), "Slide\n").unwrap();
        let f = dataset_files(d, Some(Path::new("MIDOG.json")), Some(Path::new("xval.csv"))).unwrap();
        assert_eq!(f.table_name.as_deref(), Some("domains:xval.csv"));
    }
}
