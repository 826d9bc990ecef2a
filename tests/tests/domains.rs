//! Multi-domain datasets end to end with the real `pipeline`: a fixture in the structure of the
//! public MIDOG++ files, written by the test (a few hand-written images in MIDOG++.json form,
//! their TIFFs copied from a tiny synthetic set, and a cross-validation table with both spellings
//! of the Hamamatsu XR), then the dataset stage, the MIDOG++ split, `pipeline inspect`, and every
//! bad input the issue names, each ending in one message naming the file, the row or id and the
//! field, a non-zero exit and nothing in the cache.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// (id, tumour type in MIDOG++.json, synthetic source image) of the fixture: breast cancer on the
/// XR (1–3) and the unlabelled GT450 (151–152), lymphosarcoma (245–246), melanoma (505–506).
const IMAGES: [(u32, &str, u32); 9] = [
    (1, "human breast cancer", 1),
    (2, "human breast cancer", 2),
    (3, "human breast cancer", 3),
    (151, "human breast cancer", 151),
    (152, "human breast cancer", 152),
    (245, "canine lymphosarcoma", 1),
    (246, "canine lymphosarcoma", 2),
    (505, "human melanoma", 3),
    (506, "human melanoma", 1),
];

/// The table as MIDOG++ writes it: `;`, "Hamammatsu XR" for the breast cancer XR and
/// "Hamamatsu XR" for melanoma, "canine lymphoma", capitalised species; no GT450 rows.
const TABLE: &str = "Slide;Dataset;Tumor;Scanner;Origin;Species
1;train;human breast cancer;Hamammatsu XR;UMC Utrecht;Human
2;train;human breast cancer;Hamammatsu XR;UMC Utrecht;Human
3;test;human breast cancer;Hamammatsu XR;UMC Utrecht;Human
245;train;canine lymphoma;3D Histech;VMU Vienna;Canine
246;test;canine lymphoma;3D Histech;VMU Vienna;Canine
505;train;human melanoma;Hamamatsu XR;UMC Utrecht;Human
506;test;human melanoma;Hamamatsu XR;UMC Utrecht;Human
";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Writes `data/` with MIDOG++.json, the TIFFs and datasets_xvalidation.csv.
fn fixture(p: &Project) {
    let out = p.run(&[
        "synth",
        "src",
        "--scanners",
        "XR,GT450",
        "--images-per-scanner",
        "3",
        "--scale",
        "0.08",
        "--density",
        "120",
        "--seed",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let src = read_json(&p.path("src/MIDOG.json"));
    std::fs::create_dir_all(p.path("data")).unwrap();
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (id, tumour, from) in IMAGES {
        let entry = src["images"].as_array().unwrap().iter().find(|i| i["id"] == from).unwrap();
        let name = format!("{id:03}.tiff");
        std::fs::copy(p.path(&format!("src/{from:03}.tiff")), p.path(&format!("data/{name}"))).unwrap();
        images.push(json!({"license": 1, "file_name": name, "id": id, "width": entry["width"], "height": entry["height"], "tumor_type": tumour}));
        for a in src["annotations"].as_array().unwrap().iter().filter(|a| a["image_id"] == from) {
            annotations.push(json!({
                "bbox": a["bbox"], "category_id": a["category_id"], "image_id": id,
                "labels": [a["category_id"], a["category_id"]], "id": annotations.len() + 1
            }));
        }
    }
    let midogpp = json!({
        "info": {"description": "MIDOG++-shaped test fixture"},
        "images": images,
        "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "not mitotic figure"}],
        "annotations": annotations,
    });
    std::fs::write(p.path("data/MIDOG++.json"), serde_json::to_vec(&midogpp).unwrap()).unwrap();
    p.write("data/datasets_xvalidation.csv", TABLE);
}

fn experiment(p: &Project, dataset_extra: &str) {
    p.write(
        "exp.toml",
        &format!(
            "[stages.dataset]\nroot = \"data\"\ndomains = \"datasets_xvalidation.csv\"\n{dataset_extra}\n\
             [stages.split]\npreset = \"midogpp\"\nval_fraction = 0.5\n"
        ),
    );
}

fn output(p: &Project, file: &str) -> Value {
    read_json(&find_file(&p.path("cache/objects"), file).unwrap_or_else(|| panic!("no {file} in the cache")))
}

#[test]
fn midogpp_shaped_files_give_every_image_its_domains_and_the_official_split() {
    let p = Project::new(pipeline_bin());
    fixture(&p);
    experiment(&p, "");
    let r = p.run_json("exp.toml");
    assert_eq!((r["dataset"].as_str(), r["split"].as_str()), ("ran", "ran"), "{r:?}");

    let d = output(&p, "dataset.json");
    let image = |id: u32| d["images"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap().clone();
    for (id, tumour, _) in IMAGES {
        assert_eq!(image(id)["domains"]["tumor_type"], tumour, "image {id}");
    }
    let scanner = |id: u32| image(id)["scanner"].as_str().unwrap().to_string();
    assert_eq!([scanner(1), scanner(505), scanner(245), scanner(151)], ["XR", "XR", "3D Histech", "GT450"]);
    assert_eq!(image(246)["domains"]["species"], "canine");
    assert_eq!(image(151)["labelled"], false);
    assert_eq!(image(151)["domains"]["species"], "unknown", "GT450 is not in the table: explicit unknown");
    let renamed = d["domains"]["renamings"].as_array().unwrap();
    for written in ["Hamammatsu XR", "Hamamatsu XR", "canine lymphoma"] {
        assert!(renamed.iter().any(|r| r["written"] == written), "{written} not reported: {renamed:?}");
    }

    let s = output(&p, "split.json");
    let ids = |k: &str| s[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let table_test: Vec<u32> =
        TABLE.lines().filter(|l| l.contains(";test;")).map(|l| l.split(';').next().unwrap().parse().unwrap()).collect();
    assert_eq!(ids("test"), table_test, "the MIDOG++ preset's test ids are the table's test rows");
    let mut pool = [ids("train"), ids("val")].concat();
    pool.sort();
    assert_eq!(pool, [1, 2, 245, 505]);
    assert_eq!(ids("unlabelled"), [151, 152]);
    for k in ["train", "val", "test"] {
        assert!(ids(k).iter().all(|id| !(151..=200).contains(id)), "unlabelled image in {k}");
    }

    // inspect shows the counts per tumour type and per scanner, and the renamings.
    let out = p.run(&["inspect", "data", "--quick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "tumour type",
        "canine lymphosarcoma",
        "3D Histech",
        "read as: scanner `Hamammatsu XR` → `XR` (3 images",
        "read as: tumour type `canine lymphoma` → `canine lymphosarcoma`",
        "train / test",
    ] {
        assert!(text.contains(needle), "inspect lacks {needle:?}:\n{text}");
    }
}

/// Runs the experiment after `edit` broke the fixture; the run must fail with every `needles`.
fn fails_with(edit: impl FnOnce(&Project), needles: &[&str]) {
    let p = Project::new(pipeline_bin());
    fixture(&p);
    experiment(&p, "");
    edit(&p);
    let out = p.run(&["run", "exp.toml"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "a bad input ran:\n{text}");
    for n in needles {
        assert!(text.contains(n), "message lacks {n:?}:\n{text}");
    }
    assert!(
        !p.published().iter().any(|e| e.join("out/dataset.json").exists()),
        "a dataset entry was published from bad input"
    );
}

fn edit_table(p: &Project, f: impl FnOnce(&str) -> String) {
    let path = p.path("data/datasets_xvalidation.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(&text)).unwrap();
}

#[test]
fn a_table_row_for_an_image_that_does_not_exist() {
    fails_with(
        |p| edit_table(p, |t| format!("{t}999;train;human melanoma;Hamamatsu XR;UMC Utrecht;Human\n")),
        &["datasets_xvalidation.csv line 9: slide 999 is not an image of MIDOG++.json"],
    );
}

#[test]
fn a_labelled_image_missing_from_the_table() {
    fails_with(
        |p| edit_table(p, |t| t.lines().filter(|l| !l.starts_with("505;")).map(|l| format!("{l}\n")).collect()),
        &["image 505 (505.tiff) is not in datasets_xvalidation.csv"],
    );
}

#[test]
fn a_slide_listed_twice() {
    fails_with(
        |p| edit_table(p, |t| format!("{t}2;test;human breast cancer;Hamamatsu XR;UMC Utrecht;Human\n")),
        &["datasets_xvalidation.csv", "line 9: slide 2 is listed twice (first on line 3)"],
    );
}

#[test]
fn an_unknown_column() {
    fails_with(
        |p| {
            edit_table(p, |t| {
                t.lines().map(|l| format!("{l};{}\n", if l.starts_with("Slide") { "Stain" } else { "HE" })).collect()
            })
        },
        &["datasets_xvalidation.csv", "line 1: unknown column `Stain`"],
    );
}

#[test]
fn a_tumour_type_that_is_not_a_string() {
    fails_with(
        |p| {
            let path = p.path("data/MIDOG++.json");
            let mut m = read_json(&path);
            m["images"][5]["tumor_type"] = json!(7);
            std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        },
        &["MIDOG++.json: image 245 (245.tiff): `tumor_type` is 7 (a number)"],
    );
}

#[test]
fn both_annotation_files_in_root_ask_for_a_choice() {
    fails_with(
        |p| std::fs::copy(p.path("data/MIDOG++.json"), p.path("data/MIDOG.json")).map(|_| ()).unwrap(),
        &["holds both MIDOG++.json and MIDOG.json", "annotations = \"MIDOG++.json\""],
    );
}
