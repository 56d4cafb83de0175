//! The house drawn from its own imports: every module of the library may use only the modules
//! below it in [`LAYERS`], so imports run one way and there is no cycle; and the planning layer
//! does no I/O. README's "Layout" table is this list in prose; when a module is added, it is
//! added here, where it belongs, or this test fails naming it.
//!
//! Test code (`tests.rs` files and a file's trailing `#[cfg(test)] mod tests`) is left out: a
//! test may build its fixtures with the layers above the code it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules of `src/`, lowest first. A module may use the ones before it (and its own
/// children); a path names a file or folder under `src/`.
const LAYERS: &[&str] = &[
    // Foundations: no knowledge of Docker or herdctl.
    "hash",
    "redact",
    "error",
    // The Docker Engine API client.
    "engine",
    // What was asked for: names, paths, the resolved config, the credentials.
    "labels",
    "paths",
    "config",
    "credentials",
    // The plan: pure.
    "plan",
    // The host: file-system work and who this process is.
    "host",
    // Doing it: containers, jobs, the runner.
    "run/options",
    "run/spec",
    "run/shared",
    "run/owner",
    "run/isolation",
    "run/inside",
    "run/prune_report",
    "run/pool",
    "run/retention",
    "run/lifecycle",
    "run/job",
    "run/start",
    "run/runner",
    // herdctl's shapes on top.
    "herdctl/mcp",
    "herdctl/invocation",
    "herdctl/agent",
    "herdctl/session",
];

/// Folders that only declare their modules.
const FOLDERS: &[&str] = &["run", "herdctl"];

/// The planning layer, which must not touch the file system, processes, the environment, the
/// network, the clock or the engine client (the engine's model types are data, and allowed).
const PURE: &[&str] = &["plan"];

const IMPURE: &[&str] = &[
    "std::fs",
    "fs::",
    "std::process",
    "Command::",
    "std::env",
    "env::var",
    "std::net",
    "UnixStream",
    "TcpStream",
    "SystemTime",
    "Instant::now",
    "now_ms",
    "Engine",
    "EngineSockets",
    "crate::host",
    "crate::run",
    "crate::herdctl",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of the library (not the CLI binary), with its module path.
fn files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(src())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let module = rel
                    .trim_end_matches(".rs")
                    .trim_end_matches("/mod")
                    .to_string();
                let skipped = module == "lib"
                    || module == "main"
                    || module.starts_with("cli")
                    || module.ends_with("/tests")
                    || module.contains("/tests/");
                if !skipped {
                    out.push((module, p));
                }
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its comments, string literals and trailing test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod tests"))
        {
            break;
        }
        out.push_str(&strip(line));
        out.push('\n');
    }
    out
}

/// One line without its `//` comment and with its string literals emptied.
fn strip(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match (in_str, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => {
                in_str = false;
                out.push('"');
            }
            (true, _) => {}
            (false, '"') => {
                in_str = true;
                out.push('"');
            }
            (false, '/') if chars.peek() == Some(&'/') => break,
            (false, _) => out.push(c),
        }
    }
    out
}

/// The paths after each `crate::` in `code`, a `{...}` group split into its items.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        out.extend(paths_at(rest, ""));
    }
    out
}

/// The paths that start at `s`: `a::b::c`, or a group `{a::b, c::{d, e}}` with `prefix`.
fn paths_at(s: &str, prefix: &str) -> Vec<String> {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .filter(|i| !i.trim().is_empty())
            .flat_map(|i| paths_at(i, prefix))
            .collect();
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let path = s[..end].trim_end_matches(':');
    let full = format!("{prefix}{path}");
    if s[end..].trim_start().starts_with('{') && s[..end].ends_with("::") {
        return paths_at(&s[end..], &format!("{full}::"));
    }
    vec![full]
}

/// Root re-exports of `lib.rs`: item name -> the module path it comes from.
fn root_items() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(at) = stmt.find("pub use ") else {
            continue;
        };
        for path in paths_at(&strip_all(&stmt[at + "pub use ".len()..]), "") {
            let path = path.split(" as ").next().unwrap().trim().to_string();
            let (module, item) = path.rsplit_once("::").unwrap();
            out.insert(item.to_string(), module.replace("::", "/"));
        }
    }
    out
}

fn strip_all(s: &str) -> String {
    s.lines().map(strip).collect::<Vec<_>>().join("\n")
}

/// The layer index of a module path (`run/job/records` is in `run/job`).
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .enumerate()
        .filter(|(_, l)| module == **l || module.starts_with(&format!("{l}/")))
        .map(|(i, _)| i)
        .next_back()
}

/// The module a `crate::` path reaches.
fn target(path: &str, roots: &BTreeMap<String, String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    let first = segments[0];
    if let Some(m) = roots.get(first) {
        return Some(m.clone());
    }
    let mut module = first.to_string();
    if FOLDERS.contains(&first) {
        module = format!("{first}/{}", segments.get(1)?);
    }
    Some(module)
}

#[test]
fn imports_run_one_way_down_the_layers() {
    let roots = root_items();
    let mut house: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, path) in files() {
        if FOLDERS.contains(&module.as_str()) {
            continue;
        }
        let Some(from) = layer_of(&module) else {
            problems.push(format!(
                "{module} is not in LAYERS: place it where it belongs"
            ));
            continue;
        };
        for p in crate_paths(&code(&path)) {
            if matches!(p.as_str(), "Error" | "Result") || p.starts_with("Error::") {
                continue; // the error type: everyone's
            }
            let Some(to_module) = target(&p, &roots) else {
                continue;
            };
            let Some(to) = layer_of(&to_module) else {
                problems.push(format!("{module} uses crate::{p}, which is in no layer"));
                continue;
            };
            if to == from {
                continue;
            }
            house
                .entry(LAYERS[from].to_string())
                .or_default()
                .insert(LAYERS[to].to_string());
            if to > from {
                problems.push(format!(
                    "{module} ({}) uses crate::{p} ({}), a layer above it",
                    LAYERS[from], LAYERS[to]
                ));
            }
        }
    }
    for (m, uses) in &house {
        println!(
            "{m} -> {}",
            uses.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The checker itself: it sees the runner's use of the plan, and of the engine.
    assert!(house["run/runner"].contains("plan"), "{house:?}");
    assert!(house["run/runner"].contains("engine"), "{house:?}");
}

#[test]
fn the_plan_does_no_io() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for (module, path) in files() {
        if !PURE
            .iter()
            .any(|p| module == *p || module.starts_with(&format!("{p}/")))
        {
            continue;
        }
        seen += 1;
        let code = code(&path);
        for word in IMPURE {
            if mentions(&code, word) {
                problems.push(format!("{module} mentions {word}"));
            }
        }
    }
    assert!(seen >= 4, "the plan's files were not found ({seen})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether `code` has `word`, as a whole identifier where it starts or ends with one (`Engine`
/// is not `EngineInspect`).
fn mentions(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let joined_before = word.starts_with(ident) && before.is_some_and(ident);
        let joined_after = word.ends_with(ident) && after.is_some_and(ident);
        !joined_before && !joined_after
    })
}

#[test]
fn the_checker_reads_groups_and_skips_comments_and_strings() {
    let c = strip("use crate::x; // crate::comment \"crate::in_str\"");
    assert_eq!(crate_paths(&c), ["x"]);
    assert_eq!(
        crate_paths(&strip(r#"let s = "crate::y";"#)),
        Vec::<String>::new()
    );
    assert_eq!(
        crate_paths("use crate::{a::b, c::{d, e}, F};"),
        ["a::b", "c::d", "c::e", "F"]
    );
    assert!(mentions("let e: &Engine = x;", "Engine"));
    assert!(!mentions("use crate::engine::EngineInspect;", "Engine"));
    assert!(mentions("std::fs::read(p)", "fs::"));
}
