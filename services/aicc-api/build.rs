//! Embeds the web pages (`web/`: widget, demo page, dashboards) into the
//! binary, so `aicc serve` serves them from anywhere with no files beside it.
//! `AICC_WEB_DIR` serves a folder from disk instead (development).

use std::path::{Path, PathBuf};

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    // A directory here makes Cargo rerun this script when anything under it changes.
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    if web.is_dir() {
        collect(&web, &web, &mut files);
    }
    files.sort();
    let mut out = String::from("/// Every file under web/, by its path relative to it.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        out.push_str(&format!("    ({rel:?}, include_bytes!({:?})),\n", abs.display().to_string()));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("web_files.rs");
    std::fs::write(dest, out).unwrap();
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Editor swap files, dotfiles and any local node_modules stay out.
        if name.starts_with('.') || name.ends_with('~') || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            files.push((rel, path.canonicalize().unwrap()));
        }
    }
}
