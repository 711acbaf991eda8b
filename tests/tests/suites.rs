//! Every suite in `tests/tests/` is a module of exactly one test binary (a `suite_*.rs`), so
//! that a suite's file added without its `mod` line fails here instead of never running; and
//! the three-node cluster's suites (`*_cluster.rs`) are the `cluster` binary's, the one nextest
//! runs a test at a time (`.config/nextest.toml`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// The suites in the directory: its `.rs` files but the binaries' roots, and its directories
/// (a suite of several files, `main.rs` its root).
fn suites_on_disk(dir: &Path) -> Vec<String> {
    let mut suites = Vec::new();
    for entry in fs::read_dir(dir).expect("tests/tests is readable") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a file name in UTF-8")
            .to_owned();
        if path.is_dir() {
            assert!(
                path.join("main.rs").is_file(),
                "{} is a directory of tests/tests without a main.rs",
                path.display()
            );
            suites.push(name);
        } else if path.extension().is_some_and(|e| e == "rs") && !name.starts_with("suite_") {
            suites.push(name);
        }
    }
    suites.sort();
    suites
}

/// Each binary's root and the modules it declares (`mod name;` lines).
fn modules_declared(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut binaries = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("tests/tests is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(root) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("suite_"))
        else {
            continue;
        };
        let text = fs::read_to_string(&path).expect("a binary's root is readable");
        let modules = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("mod ")?.strip_suffix(';'))
            .map(str::to_owned)
            .collect();
        binaries.insert(root.to_owned(), modules);
    }
    binaries
}

#[test]
fn every_suite_is_a_module_of_one_test_binary_and_the_cluster_suites_of_the_cluster_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let on_disk = suites_on_disk(&dir);
    let binaries = modules_declared(&dir);
    assert!(
        binaries.contains_key("cluster"),
        "no suite_cluster.rs: {binaries:?}"
    );

    let mut declared: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (binary, modules) in &binaries {
        for module in modules {
            declared.entry(module).or_default().push(binary);
        }
    }
    for suite in &on_disk {
        match declared.get(suite.as_str()).map(Vec::as_slice) {
            None => panic!(
                "tests/tests/{suite} is in no test binary: add `mod {suite};` to one of the \
                 suite_*.rs files ({:?})",
                binaries.keys().collect::<Vec<_>>()
            ),
            Some([binary]) => {
                let in_cluster = *binary == "cluster";
                assert_eq!(
                    suite.ends_with("_cluster"),
                    in_cluster,
                    "{suite} is a module of suite_{binary}.rs: the suites named *_cluster, and \
                     they alone, belong in suite_cluster.rs"
                );
            }
            Some(binaries) => panic!("{suite} is a module of several binaries: {binaries:?}"),
        }
    }
    for module in declared.keys() {
        assert!(
            on_disk.iter().any(|s| s == module),
            "`mod {module};` names no suite in tests/tests"
        );
    }
    // This suite is one of them: the check above ran on a listing that holds it.
    assert!(on_disk.iter().any(|s| s == "suites"), "{on_disk:?}");
}
