//! Reports by domain end to end with the real `pipeline`: on a tiny synthetic MIDOG++-like set
//! (three tumour types, the official-style split) two non-learned detectors are scored, reported,
//! compared and exported, and every one of those outputs has rows per tumour type with their
//! bootstrap intervals (or says why a row has none), read back with pyarrow through the
//! pipeline's Python. A MIDOG 2021 set run the same way has only its scanner rows, in exactly
//! the columns it always had.

mod common;

#[path = "../../stages/torch/src/python_env.rs"]
mod python;

use std::path::Path;

use common::*;
use serde_json::Value;

const TUMOURS: [&str; 3] = ["canine lymphosarcoma", "human breast cancer", "human melanoma"];

/// Two blob detectors (the default search grid and a narrow one), each scored, one report.
fn experiment(name: &str, dataset: &str, split: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"

[stages.dataset]
synthetic = {dataset}

[stages.split]
{split}

[stages.blobs]
kind = "blob_baseline"
needs = ["split"]

[stages.narrow]
kind = "blob_baseline"
needs = ["split"]
thresholds_sd = [2.0]
min_areas_um2 = [8.0]
max_areas_um2 = [55.0]

[stages.score]
needs = ["blobs"]

[stages.score_narrow]
kind = "score"
needs = ["narrow"]

[stages.report]
needs = ["score", "score_narrow"]
"#
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The output of one stage, through the experiment's results view.
fn output_of(p: &Project, experiment: &str, stage: &str) -> std::path::PathBuf {
    let dir = p.path(&format!("results/{experiment}/{stage}"));
    assert!(dir.is_dir(), "{} is not there", dir.display());
    dir
}

/// A Parquet file's column names and rows (as JSON objects), read by pyarrow.
fn pyarrow_read(path: &Path) -> (Vec<String>, Vec<Value>) {
    let script = "import json, sys, pyarrow.parquet as pq\n\
                  t = pq.read_table(sys.argv[1])\n\
                  print(json.dumps({'columns': t.column_names, 'rows': t.to_pylist()}))";
    let out = std::process::Command::new(python::pipeline_python())
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("the pipeline's Python (bin/install-python-env --extras)");
    assert!(
        out.status.success(),
        "reading {} with pyarrow failed (bin/install-python-env --extras installs it):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let columns = v["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    (columns, v["rows"].as_array().unwrap().clone())
}

fn rows_where<'a>(rows: &'a [Value], key: &str, value: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r[key] == value).collect()
}

#[test]
fn scores_reports_compare_and_export_break_results_down_by_tumour_type() {
    let p = Project::new(pipeline_bin());
    p.write(
        "bydomain.toml",
        &experiment(
            "bydomain",
            r#"{ images_per_scanner = 4, scanners = ["XR", "GT450"], scale = 0.08, density = 80, seed = 5, tumor_types = ["human breast cancer", "canine lymphosarcoma", "human melanoma"], images_per_tumor_type = 8, test_fraction = 0.5 }"#,
            "preset = \"midogpp\"\nval_fraction = 0.34",
        ),
    );
    let r = p.run_json("bydomain.toml");
    assert_eq!(r.get("report").map(String::as_str), Some("ran"), "{r:?}");

    // scores.json: every test image's tumour type, and a row per tumour type beside the scanners.
    let score = output_of(&p, "bydomain", "score");
    let scores = read_json(&score.join("scores.json"));
    let groups = scores["groups"].as_array().unwrap();
    let test_rows: Vec<&Value> =
        groups.iter().filter(|g| g["split"] == "test" && g["domain"] == "tumor_type").collect();
    let values: Vec<&str> = test_rows.iter().map(|g| g["scanner"].as_str().unwrap()).collect();
    assert_eq!(values, TUMOURS, "{groups:?}");
    let test_images = scores["images"].as_array().unwrap().iter().filter(|i| i["split"] == "test");
    for tumour in TUMOURS {
        let g = test_rows.iter().find(|g| g["scanner"] == tumour).unwrap();
        let n = test_images.clone().filter(|i| i["domains"]["tumor_type"] == tumour).count();
        assert_eq!(g["images"].as_u64().unwrap() as usize, n, "{tumour}: {g}");
        // An interval where the row can have one, else the reason (as scanner rows do).
        match &g["intervals"] {
            Value::Null => assert!(g["no_interval"].is_string(), "{tumour}: neither interval nor reason: {g}"),
            i => {
                let (lo, hi, f1) = (i["f1"]["lo"].as_f64().unwrap(), i["f1"]["hi"].as_f64().unwrap(), g["f1"].as_f64());
                assert!(lo <= hi && (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi), "{g}");
                assert!(f1.is_some());
            }
        }
    }
    assert!(
        test_rows.iter().any(|g| !g["intervals"].is_null()),
        "no tumour row has an interval (each has {} test images)",
        test_rows[0]["images"]
    );
    // The scanner rows and the overall row are still there, as before.
    assert!(groups.iter().any(|g| g["split"] == "test" && g["scanner"] == "all" && g.get("domain").is_none()));
    assert!(groups.iter().any(|g| g["split"] == "test" && g["scanner"] == "XR" && g.get("domain").is_none()));

    // metrics.parquet and per_image.parquet, read by pyarrow.
    let (columns, rows) = pyarrow_read(&score.join("metrics.parquet"));
    for c in ["split", "scanner", "domain", "value", "f1", "f1_lo", "f1_hi", "interval_note"] {
        assert!(columns.contains(&c.to_string()), "metrics.parquet lacks {c}: {columns:?}");
    }
    let tumour_rows = rows_where(&rows, "domain", "tumor_type");
    let test_tumours: Vec<&Value> = tumour_rows.iter().copied().filter(|r| r["split"] == "test").collect();
    assert_eq!(test_tumours.len(), TUMOURS.len(), "a test row per tumour type: {rows:?}");
    assert!(tumour_rows.iter().any(|r| r["split"] == "val"), "validation rows per tumour type too: {rows:?}");
    assert!(tumour_rows.iter().all(|r| r["scanner"].is_null()), "{tumour_rows:?}");
    // Rows of one image say so, as the scanner rows do.
    for r in tumour_rows.iter().filter(|r| r["images"] == 1) {
        assert_eq!((&r["f1_lo"], &r["interval_note"]), (&Value::Null, &Value::from("only 1 image")), "{r}");
    }
    assert!(rows_where(&rows, "domain", "scanner").iter().all(|r| r["scanner"] == r["value"]));
    assert_eq!(rows_where(&rows, "domain", "all").len(), 2);
    let (columns, _) = pyarrow_read(&score.join("per_image.parquet"));
    assert!(columns.contains(&"tumor_type".to_string()), "{columns:?}");

    // The report: terminal table, Markdown, HTML, Parquet and the chart per tumour type.
    let report = output_of(&p, "bydomain", "report");
    let summary = std::fs::read_to_string(report.join("summary.txt")).unwrap();
    assert!(summary.contains("tumor_type") && summary.contains("canine lymphosarcoma"), "{summary}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("By tumour type") && md.contains("| human melanoma |"), "{md}");
    assert!(md.contains("f1_by_tumor_type.png"), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<h2>By tumour type</h2>") && html.contains("canine lymphosarcoma"));
    let chart = std::fs::metadata(report.join("f1_by_tumor_type.png")).unwrap();
    assert!(chart.len() > 5_000, "chart of {} bytes", chart.len());
    let (columns, rows) = pyarrow_read(&report.join("report.parquet"));
    assert!(columns.starts_with(&["score_stage", "split", "scanner", "domain", "value"].map(String::from)));
    for stage in ["score", "score_narrow"] {
        let of_stage: Vec<&Value> = rows.iter().filter(|r| r["score_stage"] == stage).collect();
        for tumour in TUMOURS {
            let row = of_stage
                .iter()
                .find(|r| r["split"] == "test" && r["domain"] == "tumor_type" && r["value"] == tumour)
                .unwrap_or_else(|| panic!("report.parquet: no test row of {stage} for {tumour}: {rows:?}"));
            assert!(row["f1_lo"].is_f64() || row["interval_note"].is_string(), "{row}");
        }
    }

    // compare: paired differences per tumour type, on screen and in paired.parquet.
    let out = p.run(&["compare", "bydomain.toml", "-o", "cmp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    println!("{summary}\n{text}");
    for tumour in TUMOURS {
        assert!(text.contains(&format!("ΔF1 {tumour}")), "compare lacks {tumour}:\n{text}");
    }
    assert!(p.path("cmp/paired_f1_tumor_type.png").is_file());
    let (columns, rows) = pyarrow_read(&p.path("cmp/paired.parquet"));
    assert!(columns.contains(&"domain".to_string()) && columns.contains(&"value".to_string()), "{columns:?}");
    for tumour in TUMOURS {
        let pair = rows.iter().find(|r| r["domain"] == "tumor_type" && r["value"] == tumour);
        let pair = pair.unwrap_or_else(|| panic!("paired.parquet: no row for {tumour}: {rows:?}"));
        let mut sides = [pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap()];
        sides.sort();
        assert_eq!(sides, ["score", "score_narrow"], "{pair}");
        assert!(pair["difference"].is_f64() || pair["note"].is_string(), "{pair}");
    }
    let (_, rows) = pyarrow_read(&p.path("cmp/models.parquet"));
    assert_eq!(rows_where(&rows, "domain", "tumor_type").len(), 2 * TUMOURS.len(), "{rows:?}");

    // export: the rows per tumour type in the one table.
    let out = p.run(&["export", "bydomain.toml", "-o", "results.parquet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (columns, rows) = pyarrow_read(&p.path("results.parquet"));
    assert_eq!(&columns[3..7], ["split", "scanner", "domain", "value"].map(String::from));
    let tumour_rows = rows_where(&rows, "domain", "tumor_type");
    let test_tumours = tumour_rows.iter().filter(|r| r["split"] == "test").count();
    assert_eq!(test_tumours, 2 * TUMOURS.len(), "two score stages × tumour types: {tumour_rows:?}");
    assert!(tumour_rows.iter().all(|r| r["scanner"].is_null() && r["images"].as_i64().unwrap() > 0));
}

#[test]
fn a_midog_2021_set_keeps_its_scanner_rows_and_columns() {
    let p = Project::new(pipeline_bin());
    p.write(
        "scanners.toml",
        &experiment(
            "scanners",
            "{ images_per_scanner = 3, scale = 0.08, density = 80, seed = 5 }",
            "preset = \"stratified\"\nval_fraction = 0.34\ntest_fraction = 0.34",
        ),
    );
    let r = p.run_json("scanners.toml");
    assert_eq!(r.get("report").map(String::as_str), Some("ran"), "{r:?}");
    let score = output_of(&p, "scanners", "score");
    // The key's inputs are what they were before rows by domain: score and report version 2,
    // the same params (the run of the same file with the binary before this change made the same
    // keys and byte-identical outputs; see the score stage's version comment).
    let record = read_json(&score.join("../record.json"));
    assert_eq!(record["inputs"]["version"], 2, "{record}");
    let params: Vec<&String> = record["inputs"]["params"].as_object().unwrap().keys().collect();
    assert_eq!(params, ["bootstrap", "radius_um", "threshold"]);
    let summary: Vec<&String> = record["summary"].as_object().unwrap().keys().collect();
    assert!(summary.iter().all(|k| k.as_str() == "threshold" || k.starts_with("test_f1")), "{summary:?}");
    let report_record = read_json(&output_of(&p, "scanners", "report").join("../record.json"));
    assert_eq!(report_record["inputs"]["version"], 2);
    let scores = read_json(&score.join("scores.json"));
    assert!(scores["groups"].as_array().unwrap().iter().all(|g| g.get("domain").is_none()));
    assert!(scores["images"].as_array().unwrap().iter().all(|i| i.get("domains").is_none()));
    let metrics: Vec<String> = [
        "split",
        "scanner",
        "images",
        "tp",
        "fp",
        "fn",
        "precision",
        "recall",
        "f1",
        "ap",
        "threshold",
        "f1_lo",
        "f1_hi",
        "precision_lo",
        "precision_hi",
        "recall_lo",
        "recall_hi",
        "interval_note",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(pyarrow_read(&score.join("metrics.parquet")).0, metrics);
    let report = output_of(&p, "scanners", "report");
    let mut with_stage = vec!["score_stage".to_string()];
    with_stage.extend(metrics);
    assert_eq!(pyarrow_read(&report.join("report.parquet")).0, with_stage);
    let mut pngs: Vec<String> = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("f1_by_"))
        .collect();
    pngs.sort();
    assert_eq!(pngs, ["f1_by_scanner.png"]);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(!md.contains("By "), "{md}");

    let out = p.run(&["compare", "scanners.toml", "-o", "cmp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!p.path("cmp/paired_f1_tumor_type.png").exists());
    let (columns, _) = pyarrow_read(&p.path("cmp/paired.parquet"));
    assert!(!columns.contains(&"domain".to_string()), "{columns:?}");
    let out = p.run(&["export", "scanners.toml", "-o", "results.parquet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (columns, _) = pyarrow_read(&p.path("results.parquet"));
    assert_eq!(&columns[3..6], ["split", "scanner", "images"].map(String::from));
    assert!(!columns.contains(&"domain".to_string()) && !columns.contains(&"value".to_string()));
}
