//! The crate root only at the top: no module under `src/` imports what `lib.rs` defines (its
//! functions, or a `#[macro_export]` macro, which lands at the root), so every arrow between
//! modules runs downwards from `lib.rs`. A scan of the source text, the way a reviewer would
//! grep for it.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The crate's sources, `lib.rs` and `main.rs` (the two that stand at the top) left out.
fn modules(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The names `lib.rs` itself defines at the root: functions, types, constants and macros.
fn root_items(lib: &str) -> Vec<String> {
    let kinds = [
        "pub fn ",
        "fn ",
        "pub struct ",
        "struct ",
        "pub enum ",
        "enum ",
        "pub const ",
        "const ",
        "pub static ",
        "static ",
        "macro_rules! ",
    ];
    lib.lines()
        .filter_map(|line| kinds.iter().find_map(|kind| line.strip_prefix(kind)))
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The names a `use crate::{...}` group takes from the root itself (not through a module).
fn taken_from_root(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::{") {
        rest = &rest[at + "crate::{".len()..];
        let mut depth = 0;
        let mut name = String::new();
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(name.trim().to_owned());
                    name.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                name.push(c);
            }
        }
        names.push(name.trim().to_owned());
    }
    names.retain(|name| !name.is_empty() && !name.contains("::"));
    names
}

#[test]
fn no_module_imports_the_crate_root() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let root = root_items(&lib);
    assert!(root.iter().any(|name| name == "run"), "{root:?}");
    let mut files = Vec::new();
    modules(&src, &mut files);
    let mut found = Vec::new();
    for path in files {
        let name = path.strip_prefix(&src).unwrap().display().to_string();
        if name == "lib.rs" || name == "main.rs" {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap();
        if source.contains("#[macro_export]") {
            found.push(format!(
                "{name}: #[macro_export] puts a macro at the crate root"
            ));
        }
        for item in &root {
            for used in [format!("crate::{item}!"), format!("crate::{item}(")] {
                if source.contains(&used) {
                    found.push(format!("{name}: {used}"));
                }
            }
            for line in source.lines() {
                let line = line.trim();
                if line.starts_with("use crate::")
                    && (line == format!("use crate::{item};")
                        || line.starts_with(&format!("use crate::{item} as")))
                {
                    found.push(format!("{name}: {line}"));
                }
            }
        }
        for taken in taken_from_root(&source) {
            let bare = taken.split_whitespace().next().unwrap_or_default();
            if root.iter().any(|item| item == bare) {
                found.push(format!("{name}: use crate::{{{taken}}}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules import the crate root (lib.rs); import from the module that defines the item \
         instead (e.g. `use crate::output::status;`):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_sees_what_it_looks_for() {
    let lib = "pub fn run(cli: Cli) {}\nmacro_rules! status {}\nmod serve;\n";
    assert_eq!(root_items(lib), ["run", "status"]);
    assert_eq!(
        taken_from_root("use crate::{\n    cli::{A, B},\n    run,\n    error::E,\n};"),
        ["run"]
    );
}
