//! Checks on the source tree that anyone can run: the library's modules import one way (no
//! module uses a module that uses it back, directly or around a circle), no file passes 600
//! lines, and the library reads no environment variables (the binary resolves them once).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's files with their top-level module (`src/models/set.rs` -> "models"); the
/// binary's (`main.rs`, `cli.rs`, `commands/`) are left out.
fn library_files() -> Vec<(String, PathBuf)> {
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            (!["main", "cli", "commands", "lib"].contains(&top.as_str())).then_some((top, path))
        })
        .collect()
}

/// Top-level module -> the top-level modules its code names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (top, path) in library_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let uses = graph.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            // Skip `dfscan::crate::` lookalikes and comments' prose the same way: a path only.
            let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != top {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A circle through `start`, if any, as the modules along it.
fn circle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn modules_import_one_way() {
    let graph = module_graph();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    let circles: Vec<String> = graph.keys().filter_map(|m| circle_from(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(circles.is_empty(), "modules that import each other back: {circles:#?}");
}

#[test]
fn the_checker_sees_a_circle() {
    let mut graph = module_graph();
    graph.entry("aggregate".into()).or_default().insert("report".into());
    assert!(circle_from(&graph, "aggregate").is_some(), "report uses aggregate, so aggregate -> report is a circle");
}

#[test]
fn no_file_passes_600_lines() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    rust_files(&repo().join("tests"), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|p| (p, std::fs::read_to_string(p).unwrap().lines().count()))
        .filter(|&(_, n)| n > 600)
        .map(|(p, n)| format!("{} ({n} lines)", p.display()))
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn the_library_reads_no_environment() {
    let readers: Vec<String> = library_files()
        .into_iter()
        .filter(|(_, path)| {
            let text = std::fs::read_to_string(path).unwrap();
            text.contains("env::var") || text.contains("env::vars")
        })
        .map(|(_, path)| path.display().to_string())
        .collect();
    assert!(readers.is_empty(), "the binary resolves environment variables and passes them in: {readers:?}");
}
