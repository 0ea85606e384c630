//! Memory-mapped model files: the one place outside the CPU kernels that needs `unsafe`.
#![allow(unsafe_code)]

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

/// A `VarBuilder` over safetensors files mapped into memory (no copy of the weights).
pub fn safetensors_vars<'a>(
    files: &[&Path],
    dtype: DType,
    device: &Device,
) -> candle_core::Result<VarBuilder<'a>> {
    // SAFETY: a mapping is undefined behaviour if the file changes while mapped. The files are
    // model weights that this program only reads, installed atomically (a new version is a new
    // file, never an edit in place), so nothing writes them while they are mapped.
    unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
}
