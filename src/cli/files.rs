//! Finding the manifest files under the paths given with `-f`: folders are walked in name
//! order, symbolic links to files and folders are followed (a link back into a folder being
//! walked is noticed and not walked twice), and every file reached twice is read once.
//!
//! Anything that might hold a manifest but cannot be read is an error, never a silent skip:
//! a dangling link, a FIFO, socket or device named like a manifest, a folder that cannot be
//! listed. Such errors block `--prune` (an object that was not read must not be deleted).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The manifest files found, and what could not be read.
#[derive(Debug, Default)]
pub struct Found {
    /// Files to read, in the order given and then in name order within each folder.
    pub files: Vec<PathBuf>,
    /// Paths that might hold manifests but cannot be read.
    pub errors: Vec<String>,
    /// Harmless surprises worth a line on stderr (a link loop).
    pub notices: Vec<String>,
}

/// Whether a file name says it holds manifests.
pub fn is_manifest_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

/// Find the manifest files under `paths` (files are taken whatever their name).
pub fn find(paths: &[PathBuf]) -> Found {
    let mut found = Found::default();
    let mut seen = HashSet::new();
    for path in paths {
        find_under(path, &mut seen, &mut found);
    }
    found
}

fn find_under(root: &Path, seen: &mut HashSet<PathBuf>, found: &mut Found) {
    let metadata = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) => {
            found.errors.push(unreachable_path(root, &e));
            return;
        }
    };
    if metadata.is_file() {
        add_file(root, seen, found);
        return;
    }
    if !metadata.is_dir() {
        found.errors.push(not_a_file(root));
        return;
    }
    let walk = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name();
    for entry in walk {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let kind = entry.file_type();
                if kind.is_dir() {
                    continue;
                }
                if !is_manifest_name(path) {
                    continue;
                }
                if kind.is_file() {
                    add_file(path, seen, found);
                } else {
                    found.errors.push(not_a_file(path));
                }
            }
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                if let Some(ancestor) = e.loop_ancestor() {
                    found.notices.push(format!(
                        "{}: a symbolic link back to {}, which is read once",
                        path.display(),
                        ancestor.display()
                    ));
                } else if let Some(io) = e.io_error() {
                    found.errors.push(unreachable_path(&path, io));
                } else {
                    found
                        .errors
                        .push(format!("cannot list {}: {e}", path.display()));
                }
            }
        }
    }
}

/// Add a regular file once, however many links lead to it.
fn add_file(path: &Path, seen: &mut HashSet<PathBuf>, found: &mut Found) {
    let identity = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if seen.insert(identity) {
        found.files.push(path.to_path_buf());
    }
}

fn not_a_file(path: &Path) -> String {
    format!(
        "{}: not a regular file (a FIFO, socket or device): only files and folders are read",
        path.display()
    )
}

fn unreachable_path(path: &Path, e: &std::io::Error) -> String {
    let dangling = e.kind() == ErrorKind::NotFound
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if dangling {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        format!(
            "{}: dangling symbolic link (its target {target} does not exist)",
            path.display()
        )
    } else if e.kind() == ErrorKind::NotFound {
        format!("{}: no such file or folder", path.display())
    } else {
        format!("cannot read {}: {e}", path.display())
    }
}
