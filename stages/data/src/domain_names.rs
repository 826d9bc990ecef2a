//! Domain attributes of an image (scanner, tumour type, species, origin lab) and the spellings of
//! their values.
//!
//! Multi-domain sets write one domain several ways: the MIDOG++ cross-validation table spells the
//! breast-cancer XR scanner "Hamammatsu XR" and the others "Hamamatsu XR", names the lymphoma
//! "canine lymphoma" where MIDOG++.json says "canine lymphosarcoma", and writes species
//! capitalised. A [`Normaliser`] maps every spelling to one canonical value: the known aliases
//! below first, then case-, space- and punctuation-insensitive grouping (the first spelling seen
//! names the group). Every renaming it made is kept ([`Renaming`]) so `pipeline inspect` can
//! show it: nothing is merged silently.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The scanner that digitised the slide (`XR`, `S360`, `CS2`, `GT450`, `3D Histech`, …).
pub const SCANNER: &str = "scanner";
/// The tumour type, as MIDOG++.json names its `tumor_type` field.
pub const TUMOR_TYPE: &str = "tumor_type";
pub const SPECIES: &str = "species";
/// The laboratory the specimen came from.
pub const ORIGIN: &str = "origin";

/// Every attribute this crate knows, in the order reports show them.
pub const ATTRIBUTES: [&str; 4] = [SCANNER, TUMOR_TYPE, SPECIES, ORIGIN];

/// The explicit value of an attribute no source gives for an image (e.g. the species of an
/// unlabelled GT450 image, which the MIDOG++ table does not list).
pub const UNKNOWN: &str = "unknown";

/// Words users write for an attribute (`tumour_type`, `tumor`, …) → its name.
pub fn attribute_name(word: &str) -> Option<&'static str> {
    match name_key(word).as_str() {
        "scanner" | "scanners" => Some(SCANNER),
        "tumortype" | "tumourtype" | "tumor" | "tumour" | "tumortypes" | "tumourtypes" => Some(TUMOR_TYPE),
        "species" => Some(SPECIES),
        "origin" | "lab" | "laboratory" => Some(ORIGIN),
        _ => None,
    }
}

/// What a user reads for an attribute name.
pub fn attribute_label(attribute: &str) -> &str {
    match attribute {
        TUMOR_TYPE => "tumour type",
        ORIGIN => "origin lab",
        other => other,
    }
}

/// A known set of spellings of one value.
struct Alias {
    attribute: &'static str,
    canonical: &'static str,
    spellings: &'static [&'static str],
    why: &'static str,
}

/// Known spellings. Scanners take the short names of MIDOG 2021 tables (so the breast images of
/// MIDOG++ are `XR`, `S360`, `CS2` and `GT450` as in MIDOG 2021); tumour types take the names of
/// MIDOG++.json; species are lower case like the tumour types.
const ALIASES: &[Alias] = &[
    Alias {
        attribute: SCANNER,
        canonical: "XR",
        spellings: &["Hamamatsu XR", "Hamammatsu XR", "Hamamatsu NanoZoomer XR", "NanoZoomer XR"],
        why: "Hamamatsu NanoZoomer XR (\"Hamammatsu XR\" is a misspelling in the MIDOG++ table)",
    },
    Alias {
        attribute: SCANNER,
        canonical: "S360",
        spellings: &["Hamamatsu S360", "Hamamatsu NanoZoomer S360", "NanoZoomer S360"],
        why: "Hamamatsu NanoZoomer S360",
    },
    Alias {
        attribute: SCANNER,
        canonical: "CS2",
        spellings: &["Aperio CS2", "Aperio ScanScope CS2", "ScanScope CS2"],
        why: "Aperio ScanScope CS2",
    },
    Alias {
        attribute: SCANNER,
        canonical: "GT450",
        spellings: &["Leica GT450", "Aperio GT450", "Leica Aperio GT450"],
        why: "Leica Aperio GT450",
    },
    Alias {
        attribute: SCANNER,
        canonical: "3D Histech",
        spellings: &["3DHistech", "3D Histech Pannoramic Scan II", "3DHistech Pannoramic Scan II"],
        why: "3DHistech Pannoramic Scan II",
    },
    Alias {
        attribute: TUMOR_TYPE,
        canonical: "canine lymphosarcoma",
        spellings: &["canine lymphoma"],
        why: "MIDOG++.json says \"canine lymphosarcoma\", its cross-validation table \"canine lymphoma\"",
    },
    Alias {
        attribute: TUMOR_TYPE,
        canonical: "canine cutaneous mast cell tumor",
        spellings: &["canine cutaneous mast cell tumour", "canine mast cell tumor", "canine mast cell tumour"],
        why: "spelling",
    },
    Alias {
        attribute: TUMOR_TYPE,
        canonical: "human neuroendocrine tumor",
        spellings: &["human neuroendocrine tumour"],
        why: "spelling",
    },
    Alias { attribute: SPECIES, canonical: "human", spellings: &["Homo sapiens"], why: "species in lower case" },
    Alias {
        attribute: SPECIES,
        canonical: "canine",
        spellings: &["dog", "Canis familiaris", "Canis lupus familiaris"],
        why: "species in lower case",
    },
    Alias { attribute: SPECIES, canonical: "feline", spellings: &["cat", "Felis catus"], why: "species in lower case" },
];

/// Lower-case letters and digits only: "Hamamatsu XR", "hamamatsu-xr" and "HamamatsuXR" meet.
pub fn name_key(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Trims and collapses runs of white space.
fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical value of a known spelling, with why it maps there.
fn known(attribute: &str, written: &str) -> Option<(&'static str, &'static str)> {
    let key = name_key(written);
    ALIASES
        .iter()
        .filter(|a| a.attribute == attribute)
        .find(|a| name_key(a.canonical) == key || a.spellings.iter().any(|s| name_key(s) == key))
        .map(|a| (a.canonical, a.why))
}

/// One spelling mapped to another value, and on how many images.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Renaming {
    pub attribute: String,
    pub written: String,
    pub canonical: String,
    /// Why: a known alias, or "same name up to case, spaces and punctuation".
    pub why: String,
    /// Where it was written (a file and column).
    pub source: String,
    pub images: usize,
}

/// Maps the spellings of a dataset's domain values to canonical values and remembers what it
/// renamed. Deterministic: the same spellings in the same order give the same names.
#[derive(Debug, Clone, Default)]
pub struct Normaliser {
    /// (attribute, name key) → canonical value.
    groups: BTreeMap<(String, String), String>,
    renamed: BTreeMap<(String, String, String), (String, String, usize)>,
}

impl Normaliser {
    pub fn new() -> Normaliser {
        Normaliser::default()
    }

    /// The canonical value of `written` (from `source`, e.g. "datasets_xvalidation.csv, column
    /// Scanner") for one image.
    pub fn canonical(&mut self, attribute: &str, written: &str, source: &str) -> String {
        let tidy = tidy(written);
        let key = name_key(&tidy);
        let (canonical, why) = match known(attribute, &tidy) {
            Some((c, why)) => (c.to_string(), why.to_string()),
            None => {
                let first = self.groups.entry((attribute.to_string(), key.clone())).or_insert_with(|| tidy.clone());
                (first.clone(), "same name up to case, spaces and punctuation".to_string())
            }
        };
        self.groups.entry((attribute.to_string(), key)).or_insert_with(|| canonical.clone());
        if tidy != canonical {
            let entry = self
                .renamed
                .entry((attribute.to_string(), tidy, source.to_string()))
                .or_insert_with(|| (canonical.clone(), why, 0));
            entry.2 += 1;
        }
        canonical
    }

    /// Every renaming made, by attribute, spelling and source.
    pub fn renamings(&self) -> Vec<Renaming> {
        self.renamed
            .iter()
            .map(|((attribute, written, source), (canonical, why, images))| Renaming {
                attribute: attribute.clone(),
                written: written.clone(),
                canonical: canonical.clone(),
                why: why.clone(),
                source: source.clone(),
                images: *images,
            })
            .collect()
    }
}

/// Finds the attribute and canonical value a user's word names among a dataset's values:
/// `"human melanoma"`, `"Hamammatsu XR"` (a known spelling of `XR`), or, where a value exists
/// under two attributes, `"species:canine"`. `values` lists each attribute's canonical values.
pub fn resolve_value(word: &str, values: &[(String, Vec<String>)]) -> Result<(String, String), String> {
    let (attribute, value) = match word.split_once(':') {
        Some((a, v)) if attribute_name(a).is_some() || values.iter().any(|(n, _)| name_key(n) == name_key(a)) => {
            let name = attribute_name(a).map(str::to_string).unwrap_or_else(|| a.trim().to_string());
            (Some(name), v.trim())
        }
        _ => (None, word.trim()),
    };
    let key = name_key(value);
    let mut hits: BTreeSet<(String, String)> = BTreeSet::new();
    for (attr, vals) in values {
        if attribute.as_ref().is_some_and(|a| a != attr) {
            continue;
        }
        let alias = known(attr, value).map(|(c, _)| name_key(c));
        for v in vals {
            let k = name_key(v);
            if k == key || alias.as_ref() == Some(&k) {
                hits.insert((attr.clone(), v.clone()));
            }
        }
    }
    let listing = || {
        values
            .iter()
            .filter(|(a, _)| attribute.as_ref().is_none_or(|x| x == a))
            .map(|(a, v)| format!("{}: {}", attribute_label(a), v.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match hits.len() {
        1 => Ok(hits.into_iter().next().expect("one hit")),
        0 => {
            if let Some(a) = &attribute
                && !values.iter().any(|(n, _)| n == a)
            {
                return Err(format!("`{word}`: the dataset has no attribute `{a}`"));
            }
            Err(format!("`{word}` is none of the dataset's domains ({})", listing()))
        }
        _ => Err(format!(
            "`{word}` names a value of several attributes ({}); write it as `attribute:value`: {}",
            hits.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>().join(", "),
            hits.iter().map(|(a, v)| format!("`{a}:{v}`")).collect::<Vec<_>>().join(" or ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_midogpp_spellings_of_the_xr_are_one_scanner_and_the_renaming_is_kept() {
        let mut n = Normaliser::new();
        let src = "datasets_xvalidation.csv, column Scanner";
        assert_eq!(n.canonical(SCANNER, "Hamammatsu XR", src), "XR");
        assert_eq!(n.canonical(SCANNER, "Hamammatsu XR", src), "XR");
        assert_eq!(n.canonical(SCANNER, "Hamamatsu XR", src), "XR");
        assert_eq!(n.canonical(SCANNER, "XR", src), "XR");
        assert_eq!(n.canonical(SCANNER, "Aperio CS2", src), "CS2");
        assert_eq!(n.canonical(SCANNER, "3D Histech", src), "3D Histech");
        let r = n.renamings();
        let xr: Vec<_> = r.iter().filter(|r| r.canonical == "XR").collect();
        assert_eq!(xr.len(), 2, "{r:?}");
        assert_eq!((xr[0].written.as_str(), xr[0].images), ("Hamamatsu XR", 1));
        assert_eq!((xr[1].written.as_str(), xr[1].images), ("Hamammatsu XR", 2));
        assert!(xr[1].why.contains("misspelling"), "{:?}", xr[1]);
        assert!(!r.iter().any(|r| r.written == "XR" || r.written == "3D Histech"));
    }

    #[test]
    fn unknown_values_group_by_their_key_under_the_first_spelling() {
        let mut n = Normaliser::new();
        assert_eq!(n.canonical(ORIGIN, "UMC  Utrecht", "t"), "UMC Utrecht");
        assert_eq!(n.canonical(ORIGIN, "umc utrecht", "t"), "UMC Utrecht");
        assert_eq!(n.canonical(ORIGIN, "VMU Vienna", "t"), "VMU Vienna");
        assert_eq!(n.canonical(TUMOR_TYPE, "canine lymphoma", "t"), "canine lymphosarcoma");
        assert_eq!(n.canonical(SPECIES, "Canine", "t"), "canine");
        assert_eq!(n.canonical(SPECIES, "Human", "t"), "human");
        let r = n.renamings();
        assert!(r.iter().any(|r| r.written == "umc utrecht" && r.canonical == "UMC Utrecht"));
        // The double space is tidied, not reported as a renaming.
        assert!(!r.iter().any(|r| r.written.contains("  ")));
    }

    #[test]
    fn user_words_resolve_to_one_attribute_or_say_why_not() {
        let values = vec![
            ("scanner".to_string(), vec!["XR".to_string(), "3D Histech".to_string()]),
            ("tumor_type".to_string(), vec!["human melanoma".to_string(), "canine lymphosarcoma".to_string()]),
            ("species".to_string(), vec!["human".to_string(), "canine".to_string()]),
            ("origin".to_string(), vec!["canine".to_string()]),
        ];
        let r = |w: &str| resolve_value(w, &values);
        assert_eq!(r("Human Melanoma").unwrap(), ("tumor_type".into(), "human melanoma".into()));
        assert_eq!(r("Hamammatsu XR").unwrap(), ("scanner".into(), "XR".into()));
        assert_eq!(r("canine lymphoma").unwrap(), ("tumor_type".into(), "canine lymphosarcoma".into()));
        assert_eq!(r("species:canine").unwrap(), ("species".into(), "canine".into()));
        assert_eq!(r("tumour: human melanoma").unwrap(), ("tumor_type".into(), "human melanoma".into()));
        let e = r("canine").unwrap_err();
        assert!(e.contains("several attributes") && e.contains("species:canine"), "{e}");
        let e = r("feline").unwrap_err();
        assert!(e.contains("none of the dataset's domains") && e.contains("human melanoma"), "{e}");
        let e = r("stain:HE").unwrap_err();
        assert!(e.contains("none of"), "{e}");
    }

    #[test]
    fn attribute_words() {
        assert_eq!(attribute_name("Tumour type"), Some(TUMOR_TYPE));
        assert_eq!(attribute_name("tumor_type"), Some(TUMOR_TYPE));
        assert_eq!(attribute_name("Scanner"), Some(SCANNER));
        assert_eq!(attribute_name("stain"), None);
    }
}
