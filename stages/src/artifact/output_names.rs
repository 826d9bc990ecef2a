//! File names for per-image outputs. Never join a MIDOG.json `file_name` into an output
//! directory: it may be absolute or climb with `..` (and `Path::join` with an absolute path
//! replaces the directory), so the output would land beside the source image. Each image gets
//! a sanitised stem of its file name instead, with clashes resolved by the image id.

use std::collections::{BTreeMap, BTreeSet};

/// A file-system-safe stem per image id: the last component of `file_name` without its
/// extension, every character outside `[A-Za-z0-9._-]` replaced by `_`, no leading dot. Images
/// whose stems clash (`a/001.tiff` and `b/001.tiff`) get `{stem}-id{id}`.
pub fn output_stems<'a>(images: impl IntoIterator<Item = (u32, &'a str)>) -> BTreeMap<u32, String> {
    let stems: Vec<(u32, String)> = images.into_iter().map(|(id, name)| (id, sanitised_stem(name))).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &stems {
        *count.entry(s.as_str()).or_default() += 1;
    }
    let mut out: BTreeMap<u32, String> = stems
        .iter()
        .map(|(id, s)| (*id, if count[s.as_str()] > 1 { format!("{s}-id{id}") } else { s.clone() }))
        .collect();
    // A disambiguated name can only clash with another image's own stem by coincidence
    // (`001-id5.tiff`); the id alone is unique.
    let mut seen = BTreeSet::new();
    let clashing: Vec<u32> = out.iter().filter(|(_, n)| !seen.insert((*n).clone())).map(|(id, _)| *id).collect();
    for id in clashing {
        out.insert(id, format!("id{id}"));
    }
    out
}

fn sanitised_stem(file_name: &str) -> String {
    let last = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = match last.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => last,
    };
    let safe: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() { "image".to_string() } else { safe.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_never_leave_the_directory_and_clashes_get_the_id() {
        let names = output_stems([
            (1, "001.tiff"),
            (2, "/data/x/002.tiff"),
            (3, "../../etc/003.tiff"),
            (4, "a/dup.tiff"),
            (5, "b/dup.tiff"),
            (6, ".."),
            (7, "slide 7 (HE).svs"),
            (8, "C:\\scans\\008.tif"),
        ]);
        let expect = [
            (1, "001"),
            (2, "002"),
            (3, "003"),
            (4, "dup-id4"),
            (5, "dup-id5"),
            (6, "image"),
            (7, "slide_7__HE_"),
            (8, "008"),
        ];
        for (id, stem) in expect {
            assert_eq!(names[&id], stem, "image {id}");
        }
        for n in names.values() {
            assert!(!n.contains('/') && !n.contains('\\') && !n.starts_with('.'), "{n}");
        }
        let clash = output_stems([(5, "001-id6.tiff"), (6, "x/001.tiff"), (7, "y/001.tiff")]);
        let unique: BTreeSet<&String> = clash.values().collect();
        assert_eq!(unique.len(), 3, "{clash:?}");
        assert_eq!(clash[&6], "id6");
    }
}
