//! Names the build of the code that evaluates pathways (decision 169): a
//! hash of this crate's and the rules crate's sources and of the
//! workspace's `Cargo.lock`, given to the crate as
//! `OPENPTL_EVALUATING_BUILD`. Derived data written to disk (projection
//! snapshots, replaced states) is stamped with it, so a binary whose
//! evaluating code or dependencies differ never takes another's states for
//! its own, even under the same version number.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");
    // Each named for the hash by a label and its place under its input, so
    // that where the checkout lies does not count.
    let inputs = [
        ("app", manifest.join("src")),
        ("rules", root.join("crates/rules/src")),
        ("lock", root.join("Cargo.lock")),
    ];
    let mut files = Vec::new();
    for (label, input) in &inputs {
        println!("cargo:rerun-if-changed={}", input.display());
        let mut found = Vec::new();
        collect(input, &mut found);
        for file in found {
            let under = file.strip_prefix(input).unwrap_or(&file).to_string_lossy();
            files.push((format!("{label}/{under}"), file));
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for (name, file) in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let id: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=OPENPTL_EVALUATING_BUILD={id}");
}

/// Every file under `path` (or `path` itself, a file), in any order.
fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                collect(&entry.path(), files);
            }
        }
        Err(_) if path.is_file() => files.push(path.to_path_buf()),
        Err(_) => {}
    }
}
