//! The library's rooms import one another in one direction only: the graph of `crate::ROOM` references between the
//! top-level modules of src/ (a folder or a file each) has no cycle, and the rooms that render or hold records never
//! reach up into the suite runner. Read from the source text, so a new `use` that closes a loop fails here.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every .rs file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names through `crate::` (paths and `use crate::{a, b::c}` groups), comments
/// left out.
fn referenced_rooms(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut rooms = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // first identifier of each top-level item of the group, up to its matching brace
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        rooms.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            rooms.insert(ident(rest));
        }
    }
    rooms.retain(|r| r.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    rooms
}

/// room -> the rooms it references, for the library (src/ without the binary's main.rs and cli/).
fn room_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
        let room = first.trim_end_matches(".rs").to_string();
        if ["main", "lib", "cli"].contains(&room.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        let refs = graph.entry(room.clone()).or_default();
        refs.extend(referenced_rooms(&text).into_iter().filter(|r| *r != room));
    }
    graph
}

/// A cycle through the graph, if there is one, as the rooms along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let at = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph.keys().find_map(|n| visit(n, graph, &mut state, &mut Vec::new()))
}

#[test]
fn the_reference_parser_reads_paths_and_groups() {
    let text = "use crate::io::write_atomic;\nuse crate::{records::{self, JobRecord}, metrics};\n\
                // crate::suite in a comment\nlet x = crate::report::heatmap::heatmap(); crate::Error::x";
    let rooms: Vec<String> = referenced_rooms(text).into_iter().collect();
    assert_eq!(rooms, ["io", "metrics", "records", "report"]);
}

#[test]
fn the_cycle_finder_finds_a_planted_loop() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("report".into()).or_default().insert("records".into());
    g.entry("records".into()).or_default().insert("io".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("records".into()).or_default().insert("report".into());
    assert_eq!(find_cycle(&g), Some(vec!["records".to_string(), "report".into(), "records".into()]));
}

#[test]
fn library_rooms_import_in_one_direction() {
    let graph = room_graph();
    assert!(graph.len() >= 15, "too few rooms read: {graph:?}");
    assert_eq!(find_cycle(&graph), None, "a cycle between rooms; the graph: {graph:#?}");
    let never: [(&str, &[&str]); 5] = [
        ("report", &["suite", "check"]),
        ("records", &["suite", "report", "detectors", "attacks", "models"]),
        ("io", &["suite", "report", "records", "models", "data"]),
        ("subnet", &["report", "suite"]),
        ("detectors", &["suite", "report", "attacks"]),
    ];
    for (room, forbidden) in never {
        let refs = graph.get(room).unwrap_or_else(|| panic!("room {room} not found"));
        for f in forbidden {
            assert!(!refs.contains(*f), "{room} imports {f}; it may import {refs:?} minus {forbidden:?}");
        }
    }
}
