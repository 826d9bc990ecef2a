//! A table of each slide's domains, like MIDOG++'s `datasets_xvalidation.csv`:
//!
//! ```text
//! Slide;Dataset;Tumor;Scanner;Origin;Species
//! 1;train;human breast cancer;Hamammatsu XR;UMC Utrecht;Human
//! ```
//!
//! One row per labelled slide (`Slide` = the image id of the annotation file), `Dataset` the
//! official cross-validation set (`train` or `test`), the other columns domain attributes. The
//! separator is `;` as there, or `,` / tab when the header uses one; fields may be quoted with
//! `"`. Every problem is reported with the file, the line and the column: an unknown or repeated
//! column, a row with too few or too many fields, an empty cell, a slide that is not an id, a
//! slide listed twice, a `Dataset` other than train or test. Values are kept as written here;
//! [`crate::domain_names::Normaliser`] maps their spellings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain_names::{ORIGIN, SCANNER, SPECIES, TUMOR_TYPE};
use crate::error::DataError;

/// MIDOG++'s table of every labelled slide's domains and official set.
pub const MIDOGPP_TABLE: &str = "datasets_xvalidation.csv";

/// Its header, as MIDOG++ writes it (`;`-separated).
pub const MIDOGPP_HEADER: [&str; 6] = ["Slide", "Dataset", "Tumor", "Scanner", "Origin", "Species"];

/// The official set of a slide in a cross-validation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfficialSet {
    Train,
    Test,
}

impl OfficialSet {
    pub fn as_str(self) -> &'static str {
        match self {
            OfficialSet::Train => "train",
            OfficialSet::Test => "test",
        }
    }
}

/// The columns a table may have: header (matched ignoring case) → attribute, or the set.
const COLUMNS: &[(&str, Column)] = &[
    ("Slide", Column::Slide),
    ("Dataset", Column::Set),
    ("Tumor", Column::Attribute(TUMOR_TYPE)),
    ("Scanner", Column::Attribute(SCANNER)),
    ("Origin", Column::Attribute(ORIGIN)),
    ("Species", Column::Attribute(SPECIES)),
];

/// Other header spellings of the same columns.
const COLUMN_ALIASES: &[(&str, &str)] = &[("tumour", "Tumor"), ("tumor_type", "Tumor"), ("set", "Dataset")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Slide,
    Set,
    Attribute(&'static str),
}

/// One slide's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRow {
    /// 1-based line of the file.
    pub line: usize,
    pub set: Option<OfficialSet>,
    /// Attribute → value as written.
    pub values: BTreeMap<String, String>,
}

/// The parsed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTable {
    pub path: PathBuf,
    /// The header as written (for messages) and the attribute of each column.
    pub headers: Vec<String>,
    /// Attributes the table gives, in column order.
    pub attributes: Vec<&'static str>,
    /// Whether it has a `Dataset` column.
    pub has_set: bool,
    pub rows: BTreeMap<u32, DomainRow>,
}

impl DomainTable {
    pub fn load(path: &Path) -> Result<DomainTable, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            DataError::invalid(
                path,
                format!("not UTF-8 text (byte {}); save the table as UTF-8", e.utf8_error().valid_up_to()),
            )
        })?;
        DomainTable::parse(path, &text)
    }

    /// Parses the text of a table read from `path` (named in every message).
    pub fn parse(path: &Path, text: &str) -> Result<DomainTable, DataError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
        let Some((_, header)) = lines.find(|(_, l)| !l.trim().is_empty()) else {
            return Err(DataError::invalid(
                path,
                "the table is empty; its first line must be a header like `Slide;Dataset;Tumor;Scanner;Origin;Species`",
            ));
        };
        let sep = [';', ',', '\t'].into_iter().find(|c| header.contains(*c)).unwrap_or(';');
        let mut problems = Vec::new();
        let headers: Vec<String> =
            split_fields(header, sep).map_err(|e| DataError::invalid(path, format!("line 1: {e}")))?;
        let mut columns: Vec<Column> = Vec::new();
        for h in &headers {
            let word = h.trim();
            let canonical =
                COLUMN_ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(word)).map(|(_, c)| *c).unwrap_or(word);
            match COLUMNS.iter().find(|(name, _)| name.eq_ignore_ascii_case(canonical)) {
                Some((_, c)) if columns.contains(c) => problems.push(format!("line 1: column `{word}` appears twice")),
                Some((_, c)) => columns.push(*c),
                None => {
                    problems.push(format!(
                        "line 1: unknown column `{word}`; a domain table has the columns {}",
                        COLUMNS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ));
                    columns.push(Column::Attribute(""));
                }
            }
        }
        let Some(slide_col) = columns.iter().position(|c| *c == Column::Slide) else {
            problems.push(format!(
                "line 1: no `Slide` column (the image id of each row); the header is `{}`",
                headers.join(&sep.to_string())
            ));
            return Err(problem_error(path, problems));
        };
        let mut rows: BTreeMap<u32, DomainRow> = BTreeMap::new();
        for (line, text) in lines {
            if text.trim().is_empty() {
                continue;
            }
            let fields = match split_fields(text, sep) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!("line {line}: {e}"));
                    continue;
                }
            };
            if fields.len() != columns.len() {
                problems.push(format!(
                    "line {line}: {} fields, the header has {} ({})",
                    fields.len(),
                    columns.len(),
                    headers.join(&sep.to_string())
                ));
                continue;
            }
            let slide_text = fields[slide_col].trim();
            let Ok(id) = slide_text.parse::<u32>() else {
                problems.push(format!("line {line}, column Slide: `{slide_text}` is not an image id (a whole number)"));
                continue;
            };
            let mut row = DomainRow { line, set: None, values: BTreeMap::new() };
            for ((column, header), value) in columns.iter().zip(&headers).zip(&fields) {
                let value = value.trim();
                match column {
                    Column::Slide | Column::Attribute("") => {}
                    _ if value.is_empty() => {
                        problems.push(format!("line {line} (slide {id}), column {}: empty", header.trim()));
                    }
                    Column::Set => match value.to_ascii_lowercase().as_str() {
                        "train" => row.set = Some(OfficialSet::Train),
                        "test" => row.set = Some(OfficialSet::Test),
                        _ => problems.push(format!(
                            "line {line} (slide {id}), column {}: `{value}` is neither `train` nor `test`",
                            header.trim()
                        )),
                    },
                    Column::Attribute(attr) => {
                        row.values.insert(attr.to_string(), value.to_string());
                    }
                }
            }
            if let Some(first) = rows.get(&id) {
                problems.push(format!("line {line}: slide {id} is listed twice (first on line {})", first.line));
                continue;
            }
            rows.insert(id, row);
        }
        if !problems.is_empty() {
            return Err(problem_error(path, problems));
        }
        let attributes = columns
            .iter()
            .filter_map(|c| match c {
                Column::Attribute(a) if !a.is_empty() => Some(*a),
                _ => None,
            })
            .collect();
        Ok(DomainTable {
            path: path.to_path_buf(),
            has_set: columns.contains(&Column::Set),
            headers: headers.iter().map(|h| h.trim().to_string()).collect(),
            attributes,
            rows,
        })
    }

    /// The header of an attribute's column as the file writes it (for messages).
    pub fn column_of(&self, attribute: &str) -> String {
        COLUMNS
            .iter()
            .find(|(_, c)| *c == Column::Attribute(attribute_static(attribute)))
            .and_then(|(name, _)| self.headers.iter().find(|h| h.eq_ignore_ascii_case(name)).cloned())
            .unwrap_or_else(|| attribute.to_string())
    }

    /// The file's name for messages and sources (`datasets_xvalidation.csv`).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

fn attribute_static(a: &str) -> &'static str {
    crate::domain_names::ATTRIBUTES.iter().find(|x| **x == a).copied().unwrap_or("")
}

fn problem_error(path: &Path, problems: Vec<String>) -> DataError {
    let n = problems.len();
    let shown: Vec<String> = problems.iter().take(20).map(|p| format!("  - {p}")).collect();
    DataError::invalid(
        path,
        format!(
            "{n} problem{} with the domain table:\n{}{}",
            if n == 1 { "" } else { "s" },
            shown.join("\n"),
            if n > 20 { format!("\n  … and {} more", n - 20) } else { String::new() }
        ),
    )
}

/// Splits one line at `sep`; a field may be quoted with `"` (a doubled `""` inside is a quote).
fn split_fields(line: &str, sep: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == sep {
            out.push(std::mem::take(&mut field));
            at_start = true;
        } else {
            if !c.is_whitespace() {
                at_start = false;
            }
            field.push(c);
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(field);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "Slide;Dataset;Tumor;Scanner;Origin;Species\n";

    fn parse(text: &str) -> Result<DomainTable, String> {
        DomainTable::parse(Path::new("datasets_xvalidation.csv"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_midogpp_layout() {
        let t = parse(&format!(
            "{HEAD}1;train;human breast cancer;Hamammatsu XR;UMC Utrecht;Human\r\n\
             350;test;human neuroendocrine tumor;Hamamatsu XR;UMC Utrecht;Human\n\n"
        ))
        .unwrap();
        assert_eq!(t.rows.len(), 2);
        assert!(t.has_set);
        assert_eq!(t.attributes, [TUMOR_TYPE, SCANNER, ORIGIN, SPECIES]);
        let r = &t.rows[&350];
        assert_eq!((r.line, r.set), (3, Some(OfficialSet::Test)));
        assert_eq!(r.values[SCANNER], "Hamamatsu XR");
        assert_eq!(t.rows[&1].values[SCANNER], "Hamammatsu XR");
        assert_eq!(t.column_of(TUMOR_TYPE), "Tumor");
    }

    #[test]
    fn commas_quotes_and_fewer_columns() {
        let t = parse("slide,tumour\n\"7\",\"canine lymphoma, \"\"LSA\"\"\"\n").unwrap();
        assert!(!t.has_set);
        assert_eq!(t.rows[&7].values[TUMOR_TYPE], "canine lymphoma, \"LSA\"");
    }

    #[test]
    fn every_bad_row_is_named_by_line_and_column() {
        let e = parse(&format!(
            "{HEAD}1;train;human breast cancer;XR;UMC Utrecht;Human\n\
             x;train;human breast cancer;XR;UMC Utrecht;Human\n\
             1;test;human breast cancer;XR;UMC Utrecht;Human\n\
             2;validation;human breast cancer;XR;UMC Utrecht;Human\n\
             3;train;;XR;UMC Utrecht;Human\n\
             4;train;human breast cancer;XR\n"
        ))
        .unwrap_err();
        assert!(e.contains("datasets_xvalidation.csv") && e.contains("5 problems"), "{e}");
        assert!(e.contains("line 3, column Slide: `x` is not an image id"), "{e}");
        assert!(e.contains("line 4: slide 1 is listed twice (first on line 2)"), "{e}");
        assert!(e.contains("line 5 (slide 2), column Dataset: `validation`"), "{e}");
        assert!(e.contains("line 6 (slide 3), column Tumor: empty"), "{e}");
        assert!(e.contains("line 7: 4 fields, the header has 6"), "{e}");
    }

    #[test]
    fn unknown_and_missing_columns() {
        let e = parse("Slide;Dataset;Stain\n1;train;HE\n").unwrap_err();
        assert!(e.contains("line 1: unknown column `Stain`") && e.contains("Slide, Dataset, Tumor"), "{e}");
        let e = parse("Id;Tumor\n1;x\n").unwrap_err();
        assert!(e.contains("no `Slide` column"), "{e}");
        let e = parse("Slide;Tumor;tumour\n1;a;b\n").unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("Slide;Tumor\n1;\"open\n").unwrap_err().contains("not closed"));
    }
}
