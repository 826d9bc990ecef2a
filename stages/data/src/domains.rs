//! Which domains each image of a dataset belongs to, and whether it is labelled, from the
//! dataset's own definition:
//!
//! | source | gives |
//! |---|---|
//! | the annotation file (MIDOG.json, MIDOG++.json) | `tumor_type` of an image where the file has the field |
//! | a domain table (e.g. MIDOG++'s `datasets_xvalidation.csv`) | scanner, tumour type, origin, species and the official set of every **labelled** slide: a slide listed is labelled |
//! | the scanner id ranges (`[stages.dataset.scanners]`, by default the MIDOG 2021 ranges) | the scanner and labelled-ness of images no table lists (MIDOG 2021 itself; the unlabelled GT450 images of MIDOG++) |
//!
//! Spellings are normalised ([`Normaliser`]). Where two sources give one attribute they must agree
//! after normalisation. An attribute the dataset has but no source gives for an image is an error
//! for a labelled image and the explicit value [`UNKNOWN`] for an unlabelled one, never a guess.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain_names::{ATTRIBUTES, Normaliser, Renaming, SCANNER, SPECIES, TUMOR_TYPE, UNKNOWN, attribute_label};
use crate::domain_table::{DomainTable, OfficialSet};
use crate::midog::MidogJson;
use crate::scanner::ScannerMap;

/// The `images[]` field of MIDOG++.json that holds the tumour type.
pub const TUMOR_TYPE_FIELD: &str = "tumor_type";

/// One image's domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDomains {
    pub id: u32,
    /// Canonical scanner name.
    pub scanner: String,
    /// Every other attribute the dataset has (canonical values, [`UNKNOWN`] where no source
    /// gives one for this unlabelled image).
    pub values: BTreeMap<String, String>,
    /// By the dataset's definition (not by whether the image has annotations).
    pub labelled: bool,
    /// Its set in the domain table's `Dataset` column.
    pub set: Option<OfficialSet>,
}

/// The domains of a whole dataset.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DatasetDomains {
    /// In the annotation file's image order.
    pub images: Vec<ImageDomains>,
    pub summary: DomainSummary,
}

/// What a dataset's domains are and how they were found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DomainSummary {
    /// Attributes besides the scanner, in report order (empty for MIDOG 2021).
    pub attributes: Vec<String>,
    /// Where each attribute came from, in words.
    pub sources: Vec<String>,
    /// Every spelling that was mapped to another.
    pub renamings: Vec<Renaming>,
    /// Things worth knowing that are not errors (e.g. a species that contradicts a tumour type).
    pub notes: Vec<String>,
}

/// What the annotation file and the domain table are called in messages.
pub struct Sources<'a> {
    pub json: &'a MidogJson,
    pub json_name: &'a str,
    pub table: Option<&'a DomainTable>,
    pub scanners: &'a ScannerMap,
    /// Whether `scanners` is the user's (then it must agree with the table) or the MIDOG 2021
    /// default (then it only serves images the table does not list).
    pub scanners_explicit: bool,
}

/// Assigns every image its domains; every problem is returned, each naming the image (and the
/// table line) and the field.
pub fn assign(src: &Sources) -> Result<DatasetDomains, Vec<String>> {
    let mut problems = Vec::new();
    let mut norm = Normaliser::new();
    let table = src.table;
    let table_name = table.map(DomainTable::file_name).unwrap_or_default();
    let ids: BTreeSet<u32> = src.json.images.iter().map(|i| i.id).collect();
    if let Some(t) = table {
        for (id, row) in &t.rows {
            if !ids.contains(id) {
                problems
                    .push(format!("{table_name} line {}: slide {id} is not an image of {}", row.line, src.json_name));
            }
        }
    }

    // Tumour types written in the annotation file.
    let mut json_tumour: BTreeMap<u32, String> = BTreeMap::new();
    for img in &src.json.images {
        match img.extra.get(TUMOR_TYPE_FIELD) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                json_tumour.insert(img.id, s.clone());
            }
            Some(other) => problems.push(format!(
                "{}: image {} ({}): `{TUMOR_TYPE_FIELD}` is {}, not a tumour type name (a non-empty string)",
                src.json_name,
                img.id,
                img.file_name,
                describe(other)
            )),
        }
    }

    let mut attributes: BTreeSet<&str> = BTreeSet::new();
    let mut sources = Vec::new();
    if !json_tumour.is_empty() {
        attributes.insert(TUMOR_TYPE);
        sources.push(format!("{}: {TUMOR_TYPE_FIELD} of {} images", src.json_name, json_tumour.len()));
    }
    if let Some(t) = table {
        attributes.extend(t.attributes.iter().copied().filter(|a| *a != SCANNER));
        sources.push(format!(
            "{table_name}: {} of {} labelled slides{}",
            t.attributes.iter().map(|a| attribute_label(a)).collect::<Vec<_>>().join(", "),
            t.rows.len(),
            if t.has_set { ", and their official train/test set" } else { "" }
        ));
    }
    let table_scanner = table.is_some_and(|t| t.attributes.contains(&SCANNER));
    if !table_scanner || table.is_some_and(|t| t.rows.len() < ids.len()) {
        sources.push(format!(
            "scanner{} from {}",
            if table_scanner { " of the images the table does not list" } else { "" },
            if src.scanners_explicit {
                "the id ranges of [stages.dataset.scanners]"
            } else {
                "the MIDOG 2021 id ranges (1–50 XR, 51–100 S360, 101–150 CS2, 151–200 GT450 unlabelled)"
            }
        ));
    }

    let mut images = Vec::with_capacity(src.json.images.len());
    let mut missing: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for img in &src.json.images {
        let name = format!("image {} ({})", img.id, img.file_name);
        let row = table.and_then(|t| t.rows.get(&img.id));
        let ranged = src.scanners.scanner_of(img.id);
        let at_line = |line: usize| format!("{table_name} line {line}");
        let labelled = match (table, row, ranged) {
            (None, _, Some(s)) => s.labelled,
            (None, _, None) => {
                problems.push(format!("{name}: no scanner covers this id; add it to [stages.dataset.scanners]"));
                continue;
            }
            (Some(_), Some(row), Some(s)) if src.scanners_explicit && !s.labelled => {
                problems.push(format!(
                    "{name}: {} lists it (so it is labelled), but [stages.dataset.scanners] puts it in unlabelled scanner {}",
                    at_line(row.line),
                    s.name
                ));
                continue;
            }
            (Some(_), Some(_), _) => true,
            (Some(_), None, Some(s)) if !s.labelled => false,
            (Some(_), None, _) => {
                problems.push(format!(
                    "{name} is not in {table_name}, which lists every labelled slide; add its row, or give its id \
                     to an unlabelled scanner in [stages.dataset.scanners] (unlabelled images are kept for \
                     unsupervised domain adaptation)"
                ));
                continue;
            }
        };

        let scanner = match (row.and_then(|r| r.values.get(SCANNER)), ranged) {
            (Some(written), ranged) => {
                let column = table.map(|t| t.column_of(SCANNER)).unwrap_or_default();
                let c = norm.canonical(SCANNER, written, &format!("{table_name}, column {column}"));
                if src.scanners_explicit
                    && let Some(s) = ranged
                    && crate::domain_names::name_key(&norm.canonical(SCANNER, &s.name, "[stages.dataset.scanners]"))
                        != crate::domain_names::name_key(&c)
                {
                    problems.push(format!(
                        "{name}: {} says scanner `{written}`, [stages.dataset.scanners] says `{}`",
                        at_line(row.map(|r| r.line).unwrap_or(0)),
                        s.name
                    ));
                }
                c
            }
            // The id ranges' names are the user's own (or MIDOG 2021's): kept as they are.
            (None, Some(s)) => s.name.clone(),
            (None, None) => {
                problems.push(format!(
                    "{name}: no scanner: {} and no [stages.dataset.scanners] range covers id {}",
                    if table.is_some() { format!("{table_name} has no Scanner column") } else { "no table".into() },
                    img.id
                ));
                continue;
            }
        };

        let mut values = BTreeMap::new();
        for &attr in attributes.iter() {
            let from_json = (attr == TUMOR_TYPE).then(|| json_tumour.get(&img.id)).flatten();
            let from_table = row.and_then(|r| r.values.get(attr)).map(|v| (v, r_line(row)));
            let value = match (from_json, from_table) {
                (Some(j), Some((t, line))) => {
                    let a = norm.canonical(attr, j, &format!("{}, field {TUMOR_TYPE_FIELD}", src.json_name));
                    let column = table.map(|t| t.column_of(attr)).unwrap_or_default();
                    let b = norm.canonical(attr, t, &format!("{table_name}, column {column}"));
                    if a != b {
                        problems.push(format!(
                            "{name}: {} says {TUMOR_TYPE_FIELD} `{j}`, {} (column {column}) says `{t}`",
                            src.json_name,
                            at_line(line)
                        ));
                    }
                    a
                }
                (Some(j), None) => norm.canonical(attr, j, &format!("{}, field {TUMOR_TYPE_FIELD}", src.json_name)),
                (None, Some((t, _))) => {
                    let column = table.map(|t| t.column_of(attr)).unwrap_or_default();
                    norm.canonical(attr, t, &format!("{table_name}, column {column}"))
                }
                (None, None) if labelled => {
                    missing.entry(attr).or_default().push(img.id);
                    continue;
                }
                (None, None) => UNKNOWN.to_string(),
            };
            values.insert(attr.to_string(), value);
        }
        images.push(ImageDomains { id: img.id, scanner, values, labelled, set: row.and_then(|r| r.set) });
    }
    for (attr, ids) in missing {
        problems.push(format!(
            "{} is given for some images but not for the labelled image{} {}: give it in {}",
            attribute_label(attr),
            if ids.len() == 1 { "" } else { "s" },
            id_list(&ids),
            if attr == TUMOR_TYPE && table.is_none() {
                format!("{} (`{TUMOR_TYPE_FIELD}` of every image) or a domain table", src.json_name)
            } else {
                format!("{} or {}", table_name, src.json_name)
            }
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let attributes: Vec<String> =
        ATTRIBUTES.iter().filter(|a| **a != SCANNER && attributes.contains(*a)).map(|a| a.to_string()).collect();
    let notes = species_notes(&images);
    Ok(DatasetDomains { images, summary: DomainSummary { attributes, sources, renamings: norm.renamings(), notes } })
}

fn r_line(row: Option<&crate::domain_table::DomainRow>) -> usize {
    row.map(|r| r.line).unwrap_or(0)
}

/// Tumour types named after a species ("canine …", "human …") whose species attribute says
/// another: reported, not changed (the MIDOG++ table gives species `Human` for its canine soft
/// tissue sarcomas).
fn species_notes(images: &[ImageDomains]) -> Vec<String> {
    let mut found: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for img in images {
        let (Some(t), Some(s)) = (img.values.get(TUMOR_TYPE), img.values.get(SPECIES)) else { continue };
        let first = t.split_whitespace().next().unwrap_or("");
        if ["human", "canine", "feline"].contains(&first) && s != UNKNOWN && first != s {
            found.entry((t.clone(), s.clone())).or_default().push(img.id);
        }
    }
    found
        .into_iter()
        .map(|((t, s), ids)| {
            format!(
                "tumour type `{t}` with species `{s}` on {} image{} ({}); kept as written",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                id_list(&ids)
            )
        })
        .collect()
}

/// "1–3, 7, 9–12" (at most 12 runs shown).
pub fn id_list(ids: &[u32]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((_, hi)) if *hi + 1 == id => *hi = id,
            _ => runs.push((id, id)),
        }
    }
    let shown: Vec<String> =
        runs.iter().take(12).map(|(a, b)| if a == b { a.to_string() } else { format!("{a}–{b}") }).collect();
    let more = if runs.len() > 12 { format!(", … ({} runs more)", runs.len() - 12) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

fn describe(v: &serde_json::Value) -> String {
    let kind = match v {
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "an empty string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Null => "null",
    };
    let text = v.to_string();
    if text.len() > 40 { kind.to_string() } else { format!("{text} ({kind})") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_names::ORIGIN;
    use std::path::Path;

    fn json(images: &[(u32, Option<serde_json::Value>)]) -> MidogJson {
        let images: Vec<serde_json::Value> = images
            .iter()
            .map(|(id, t)| {
                let mut v =
                    serde_json::json!({"id": id, "file_name": format!("{id:03}.tiff"), "width": 100, "height": 80});
                if let Some(t) = t {
                    v["tumor_type"] = t.clone();
                }
                v
            })
            .collect();
        serde_json::from_value(serde_json::json!({"images": images, "annotations": []})).unwrap()
    }

    fn table(text: &str) -> DomainTable {
        DomainTable::parse(Path::new("datasets_xvalidation.csv"), text).unwrap()
    }

    fn s(v: &str) -> Option<serde_json::Value> {
        Some(serde_json::json!(v))
    }

    const CSV: &str = "Slide;Dataset;Tumor;Scanner;Origin;Species\n\
        1;train;human breast cancer;Hamammatsu XR;UMC Utrecht;Human\n\
        2;test;human breast cancer;Hamammatsu XR;UMC Utrecht;Human\n\
        245;test;canine lymphoma;3D Histech;VMU Vienna;Canine\n\
        405;train;canine soft tissue sarcoma;3D Histech;AMC New York;Human\n\
        505;train;human melanoma;Hamamatsu XR;UMC Utrecht;Human\n";

    fn midogpp() -> MidogJson {
        json(&[
            (1, s("human breast cancer")),
            (2, s("human breast cancer")),
            (151, s("human breast cancer")),
            (245, s("canine lymphosarcoma")),
            (405, s("canine soft tissue sarcoma")),
            (505, s("human melanoma")),
        ])
    }

    fn assign_with(m: &MidogJson, t: Option<&DomainTable>) -> Result<DatasetDomains, Vec<String>> {
        assign(&Sources {
            json: m,
            json_name: "MIDOG++.json",
            table: t,
            scanners: &ScannerMap::midog_2021(),
            scanners_explicit: false,
        })
    }

    #[test]
    fn midogpp_images_get_tumour_type_and_scanner_and_gt450_stays_unlabelled() {
        let (m, t) = (midogpp(), table(CSV));
        let d = assign_with(&m, Some(&t)).unwrap();
        assert_eq!(d.summary.attributes, [TUMOR_TYPE, SPECIES, ORIGIN]);
        let by_id = |id: u32| d.images.iter().find(|i| i.id == id).unwrap();
        assert_eq!(by_id(1).scanner, "XR");
        assert_eq!(by_id(505).scanner, "XR", "both spellings are one scanner");
        assert_eq!(by_id(245).scanner, "3D Histech");
        assert_eq!(by_id(245).values[TUMOR_TYPE], "canine lymphosarcoma");
        assert_eq!(by_id(245).values[SPECIES], "canine");
        assert_eq!(by_id(2).set, Some(OfficialSet::Test));
        let gt = by_id(151);
        assert_eq!((gt.scanner.as_str(), gt.labelled, gt.set), ("GT450", false, None));
        assert_eq!(gt.values[TUMOR_TYPE], "human breast cancer");
        assert_eq!(gt.values[SPECIES], UNKNOWN);
        assert!(d.images.iter().filter(|i| i.id != 151).all(|i| i.labelled));
        assert!(
            d.summary.renamings.iter().any(|r| r.written == "Hamammatsu XR" && r.canonical == "XR" && r.images == 2)
        );
        assert!(
            d.summary.renamings.iter().any(|r| r.written == "canine lymphoma" && r.canonical == "canine lymphosarcoma")
        );
        assert_eq!(d.summary.notes.len(), 1, "{:?}", d.summary.notes);
        assert!(d.summary.notes[0].contains("canine soft tissue sarcoma") && d.summary.notes[0].contains("`human`"));
    }

    #[test]
    fn midog_2021_has_scanners_only() {
        let m = json(&[(1, None), (60, None), (151, None)]);
        let d = assign_with(&m, None).unwrap();
        assert!(d.summary.attributes.is_empty());
        assert_eq!(
            d.images.iter().map(|i| (i.scanner.as_str(), i.labelled)).collect::<Vec<_>>(),
            [("XR", true), ("S360", true), ("GT450", false)]
        );
        assert!(d.images.iter().all(|i| i.values.is_empty() && i.set.is_none()));
        assert!(d.summary.renamings.is_empty());
    }

    #[test]
    fn bad_inputs_name_the_file_the_row_or_id_and_the_field() {
        // A row for an image that does not exist, and a labelled image missing from the table.
        let mut m = midogpp();
        m.images.retain(|i| i.id != 505);
        m.images.push(json(&[(600, s("human melanoma"))]).images.remove(0));
        let e = assign_with(&m, Some(&table(CSV))).unwrap_err().join("\n");
        assert!(e.contains("datasets_xvalidation.csv line 6: slide 505 is not an image of MIDOG++.json"), "{e}");
        assert!(e.contains("image 600 (600.tiff) is not in datasets_xvalidation.csv"), "{e}");
        // A tumour type that is not a string.
        let mut m = midogpp();
        m.images[0].extra.insert("tumor_type".into(), serde_json::json!(3));
        let e = assign_with(&m, Some(&table(CSV))).unwrap_err().join("\n");
        assert!(e.contains("MIDOG++.json: image 1 (001.tiff): `tumor_type` is 3 (a number)"), "{e}");
        // The file and the table disagree.
        let mut m = midogpp();
        m.images[4].extra.insert("tumor_type".into(), serde_json::json!("human melanoma"));
        let e = assign_with(&m, Some(&table(CSV))).unwrap_err().join("\n");
        assert!(e.contains("image 405") && e.contains("line 5") && e.contains("column Tumor"), "{e}");
        // Tumour types for some images only, no table.
        let m = json(&[(1, s("human breast cancer")), (2, None)]);
        let e = assign_with(&m, None).unwrap_err().join("\n");
        assert!(e.contains("tumour type is given for some images but not for the labelled image 2"), "{e}");
    }

    #[test]
    fn an_explicit_scanner_table_must_agree_with_the_domain_table() {
        let m = json(&[(1, None), (2, None)]);
        let t = table("Slide;Scanner\n1;Aperio CS2\n2;XR\n");
        let mut map = ScannerMap::midog_2021();
        map.entries.retain(|(r, _)| r.contains(&1));
        let e = assign(&Sources {
            json: &m,
            json_name: "MIDOG.json",
            table: Some(&t),
            scanners: &map,
            scanners_explicit: true,
        })
        .unwrap_err()
        .join("\n");
        assert!(e.contains("image 1 (001.tiff): datasets_xvalidation.csv line 2 says scanner `Aperio CS2`"), "{e}");
        assert!(!e.contains("image 2"), "{e}");
    }

    #[test]
    fn id_lists_are_runs() {
        assert_eq!(id_list(&[5, 1, 2, 3, 9]), "1–3, 5, 9");
    }
}
