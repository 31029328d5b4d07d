//! The architecture holds: the kernel and the protocol crates never depend on
//! an async runtime, and their sources never name one. Read from
//! `cargo metadata`, so it cannot drift from the manifests.

use std::path::{Path, PathBuf};
use std::process::Command;

const RUNTIMES: &[&str] = &[
    "tokio",
    "smol",
    "async-io",
    "async-std",
    "async-trait",
    "async-executor",
];

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The workspace crates that must stay runtime-free: `core` and everything
/// under `protocols/`, with their directories.
fn sans_io_packages(meta: &serde_json::Value) -> Vec<(String, PathBuf, &serde_json::Value)> {
    workspace_packages(meta)
        .into_iter()
        .filter(|(_, rel, _, _)| rel == Path::new("core") || rel.starts_with("protocols"))
        .map(|(name, _, dir, p)| (name, dir, p))
        .collect()
}

/// Every workspace member: name, directory relative to the root, absolute
/// directory, package.
fn workspace_packages(
    meta: &serde_json::Value,
) -> Vec<(String, PathBuf, PathBuf, &serde_json::Value)> {
    let root = PathBuf::from(meta["workspace_root"].as_str().expect("workspace_root"));
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| members.contains(&p["id"].as_str().unwrap_or("")))
        .filter_map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str()?);
            let dir = manifest.parent()?.to_path_buf();
            let rel = dir.strip_prefix(&root).ok()?.to_path_buf();
            Some((p["name"].as_str().unwrap_or("?").to_string(), rel, dir, p))
        })
        .collect()
}

#[test]
fn core_and_protocols_do_not_depend_on_a_runtime() {
    let meta = metadata();
    let pkgs = sans_io_packages(&meta);
    assert!(
        pkgs.iter().any(|(n, _, _)| n == "arcly-core"),
        "arcly-core not found in the workspace"
    );
    let mut bad = Vec::new();
    for (name, _, p) in &pkgs {
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or("");
            let normal = dep["kind"].is_null();
            if normal && RUNTIMES.contains(&dep_name) {
                bad.push(format!("{name} depends on {dep_name}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "runtime dependencies in sans-IO crates: {bad:?}"
    );
}

#[test]
fn core_and_protocols_sources_name_no_runtime() {
    let meta = metadata();
    let mut bad = Vec::new();
    for (name, dir, _) in sans_io_packages(&meta) {
        let mut stack = vec![dir.join("src")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for rt in [
                        "tokio::",
                        "smol::",
                        "async_io::",
                        "async_std::",
                        "async_trait",
                    ] {
                        if text.contains(rt) {
                            bad.push(format!("{name}: {} mentions {rt}", path.display()));
                        }
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn only_one_module_in_core_may_use_unsafe() {
    let meta = metadata();
    let root = PathBuf::from(meta["workspace_root"].as_str().expect("workspace_root"));
    let src = root.join("core/src");
    let mut allowed = Vec::new();
    let mut stack = vec![src];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains("allow(unsafe_code)")
            {
                allowed.push(
                    path.strip_prefix(&root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert_eq!(allowed, vec!["core/src/bus/slot.rs".to_string()]);
}

/// The workspace crates under `dir/`, with their packages.
fn packages_under<'a>(
    meta: &'a serde_json::Value,
    dir: &str,
) -> Vec<(String, &'a serde_json::Value)> {
    workspace_packages(meta)
        .into_iter()
        .filter(|(_, rel, _, _)| rel.starts_with(dir))
        .map(|(name, _, _, p)| (name, p))
        .collect()
}

/// Whether a package builds a library (the gateway builds only a binary).
fn has_lib(p: &serde_json::Value) -> bool {
    p["targets"].as_array().into_iter().flatten().any(|t| {
        t["kind"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| k.as_str().is_some_and(|k| k == "lib" || k == "rlib"))
    })
}

/// Names of a package's normal (not dev, not build) dependencies.
fn normal_deps(p: &serde_json::Value) -> Vec<String> {
    p["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["kind"].is_null())
        .filter_map(|d| d["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn adapter_libraries_depend_on_no_protocol_crate() {
    let meta = metadata();
    let protocols: Vec<String> = packages_under(&meta, "protocols")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(protocols.iter().any(|n| n == "arcly-rtmp"), "{protocols:?}");
    let adapters = packages_under(&meta, "adapters");
    let libs: Vec<_> = adapters.iter().filter(|(_, p)| has_lib(p)).collect();
    assert!(libs.len() >= 3, "the three adapter libraries: {libs:?}");
    let mut bad = Vec::new();
    for (name, p) in libs {
        for d in normal_deps(p) {
            if protocols.contains(&d) {
                bad.push(format!("{name} depends on {d}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "adapter libraries must not know a protocol: {bad:?}"
    );
}

#[test]
fn protocol_crates_do_not_depend_on_each_other() {
    let meta = metadata();
    let protocols = packages_under(&meta, "protocols");
    let names: Vec<&str> = protocols.iter().map(|(n, _)| n.as_str()).collect();
    let mut bad = Vec::new();
    for (name, p) in &protocols {
        for d in normal_deps(p) {
            if names.contains(&d.as_str()) {
                bad.push(format!("{name} depends on {d}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "protocols meet through core, not each other: {bad:?}"
    );
}
