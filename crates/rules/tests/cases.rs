//! Table-driven rule tests: every `tests/cases/*.json` file (and the shared
//! conformance cases, when `../shared` is present) run through one helper.

mod support;

use std::path::{Path, PathBuf};

use openptl_rules::RulesConfig;
use serde_json::Value;

fn run_files(files: &[PathBuf]) -> (usize, Vec<String>) {
    let config = RulesConfig::defaults();
    let mut count = 0;
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let cases: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in cases.as_array().expect("a file holds a list of cases") {
            count += 1;
            let problems = support::check_case(case, &config);
            if !problems.is_empty() {
                failures.push(format!(
                    "{} ({}):\n    {}",
                    case["id"],
                    file.file_name().unwrap().to_string_lossy(),
                    problems.join("\n    ")
                ));
            }
        }
    }
    (count, failures)
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn rule_cases() {
    let files = json_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases"));
    assert!(!files.is_empty(), "no rule case files found");
    let (count, failures) = run_files(&files);
    assert!(
        failures.is_empty(),
        "{} of {count} rule cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{count} rule cases passed");
}

#[test]
fn shared_conformance_cases_through_the_pure_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    if !dir.exists() {
        openptl_testkit::skip(&format!(
            "{} not found; the shared conformance cases did not run",
            dir.display()
        ));
        return;
    }
    // `cases.json` at the top and every case folder beside it (e.g.
    // `treatment-periods/`): a new folder is run without being named here.
    let mut files = json_files(&dir);
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in &folders {
        files.extend(json_files(folder));
    }
    let (count, failures) = run_files(&files);
    eprintln!("{count} shared conformance cases passed through the pure rules");
    assert!(count > 0, "no conformance cases found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {count} conformance cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
