//! The deployment files parse. Docker has no engine on the machines this runs
//! on, so the containers themselves are not started here (docs/operations.md).

#[test]
fn docker_compose_file_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // `docker compose` (the v2 plugin) where it exists, else Debian's `docker-compose`.
    let run = |cmd: &str, args: &[&str]| std::process::Command::new(cmd).args(args).current_dir(root).output();
    let out = match run("docker", &["compose", "-f", "docker-compose.yml", "config", "--quiet"]) {
        Ok(o) if o.status.success() || !String::from_utf8_lossy(&o.stderr).contains("unknown") => o,
        _ => run("docker-compose", &["-f", "docker-compose.yml", "config", "--quiet"])
            .expect("neither `docker compose` nor `docker-compose` is installed; scripts/test installs docker-compose"),
    };
    assert!(out.status.success(), "docker compose config failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(root.join("Dockerfile").exists());
}
