//! The server's layers, checked from its source: imports run one way, from the etcd API surface down to the
//! state machine, and nothing below imports anything above it.
//!
//! | rank | layer | folder or module |
//! |---|---|---|
//! | 6 | wiring (`run`: builds and connects the rest; nothing imports it) | `server.rs` |
//! | 5 | the etcd API surface: gRPC services, HTTP endpoints, the client connection shim | `api/` |
//! | 4 | proposals (who waits for which entry) and linearizable reads | `proposals.rs`, `read/` |
//! | 3 | consensus: the Raft node over the WAL, peer transport, snapshot transfer, bootstrap | `consensus/` |
//! | 2 | the state machine: kv, leases, the membership registry | `apply/` |
//! | 0 | shared vocabulary: errors, protos, the internal request, configuration, the log | the rest |
//!
//! `tools/` (bench, cluster) stands apart: it may import only the shared vocabulary.
//!
//! A module may import its own layer and the layers below it. `KNOWN` lists the imports that break the rule
//! today, each to be untied (see the issue on server layers); the test fails on any other, and also on a listed
//! one that is gone, so the list only shrinks.

use std::collections::BTreeSet;
use std::path::Path;

/// (importing layer, imported layer) pairs that break the rule today.
const KNOWN: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> Option<(&'static str, u32)> {
    Some(match module {
        "server" => ("server", 6),
        "api" => ("api", 5),
        "proposals" | "read" => ("proposals", 4),
        "consensus" => ("consensus", 3),
        "apply" => ("apply", 2),
        "tools" => ("tools", 0),
        "error" | "proto" | "request" | "config" | "logging" | "failpoints" => ("base", 0),
        _ => return None,
    })
}

/// The layer a source file belongs to, from its path under `src/`.
fn layer_of_file(rel: &Path) -> Option<(&'static str, u32)> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    layer_of(first.trim_end_matches(".rs"))
}

/// Every top-level module a file names through `crate::…` (paths and `use crate::{…}` groups).
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The (importer, imported) layer pairs that break the rule, with a file that shows each.
fn violations() -> Vec<((&'static str, &'static str), String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: Vec<((&'static str, &'static str), String)> = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some((from, rank)) = layer_of_file(rel) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for module in imports(&text) {
            let Some((to, to_rank)) = layer_of(&module) else { continue };
            let allowed =
                from == to || to == "base" || (from != "tools" && to != "tools" && to != "server" && to_rank < rank);
            if !allowed && !out.iter().any(|(pair, _)| *pair == (from, to)) {
                out.push(((from, to), rel.display().to_string()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn imports_run_one_way() {
    let found = violations();
    let unknown: Vec<_> = found.iter().filter(|(pair, _)| !KNOWN.contains(pair)).collect();
    assert!(unknown.is_empty(), "a lower layer imports a higher one (layer pair, a file showing it): {unknown:?}");
    let gone: Vec<_> = KNOWN.iter().filter(|pair| !found.iter().any(|(p, _)| p == *pair)).collect();
    assert!(gone.is_empty(), "untied: remove these from KNOWN: {gone:?}");
}

#[test]
fn the_checker_sees_imports() {
    let text = "use crate::api::kv;\nuse crate::{apply, error::Error};\nlet x = crate::consensus::node::Msg::Stop;";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["api", "apply", "consensus", "error"]);
    assert_eq!(layer_of_file(Path::new("apply/lease.rs")), Some(("apply", 2)));
    assert_eq!(layer_of_file(Path::new("server.rs")), Some(("server", 6)));
}
