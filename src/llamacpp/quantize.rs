//! llama.cpp's own quantizer (`llama_model_quantize`), as its `llama-quantize` tool runs it: the
//! file types users download (Q4_K_M, IQ4_XS, ...) made from any GGUF, so that the files a
//! team ships and real weights in every type can be validated.

use std::ffi::CString;
use std::path::Path;

use super::{ffi, last_error, LlamaError, SESSION_LOCK};

/// A llama.cpp file type (`LLAMA_FTYPE_MOSTLY_*`, `llama.h`) by the name `llama-quantize` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub name: &'static str,
    /// The `llama_ftype` value.
    pub id: i32,
    /// llama.cpp refuses this type without an importance matrix (`tensor_requires_imatrix`).
    pub needs_imatrix: bool,
}

const fn ft(name: &'static str, id: i32, needs_imatrix: bool) -> FileType {
    FileType {
        name,
        id,
        needs_imatrix,
    }
}

/// Every file type of the pinned llama.h that its quantizer writes.
pub const FILE_TYPES: &[FileType] = &[
    ft("F32", 0, false),
    ft("F16", 1, false),
    ft("BF16", 32, false),
    ft("Q4_0", 2, false),
    ft("Q4_1", 3, false),
    ft("Q5_0", 8, false),
    ft("Q5_1", 9, false),
    ft("Q8_0", 7, false),
    ft("Q2_K", 10, false),
    ft("Q2_K_S", 21, true),
    ft("Q3_K_S", 11, false),
    ft("Q3_K_M", 12, false),
    ft("Q3_K_L", 13, false),
    ft("Q4_K_S", 14, false),
    ft("Q4_K_M", 15, false),
    ft("Q5_K_S", 16, false),
    ft("Q5_K_M", 17, false),
    ft("Q6_K", 18, false),
    ft("IQ1_S", 24, true),
    ft("IQ1_M", 31, true),
    ft("IQ2_XXS", 19, true),
    ft("IQ2_XS", 20, true),
    ft("IQ2_S", 28, true),
    ft("IQ2_M", 29, true),
    ft("IQ3_XXS", 23, true),
    ft("IQ3_XS", 22, true),
    ft("IQ3_S", 26, false),
    ft("IQ3_M", 27, false),
    ft("IQ4_NL", 25, false),
    ft("IQ4_XS", 30, false),
    ft("TQ1_0", 36, false),
    ft("TQ2_0", 37, false),
    ft("MXFP4_MOE", 38, false),
];

impl FileType {
    /// Looks a type up by name, case-insensitively (`q4_k_m` is `Q4_K_M`).
    pub fn parse(name: &str) -> Option<FileType> {
        FILE_TYPES
            .iter()
            .copied()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    pub fn names() -> String {
        FILE_TYPES
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Writes `output` as `input` quantized to `ftype` by `llama_model_quantize` (requantizing
/// allowed, as `llama-quantize --allow-requantize`). Types that need an importance matrix get a
/// uniform one (every column weighted 1). `output` is written by llama.cpp as it goes: callers
/// that need all-or-nothing write to a temporary path and rename.
pub fn quantize_model(
    input: &Path,
    output: &Path,
    ftype: FileType,
    threads: usize,
) -> Result<(), LlamaError> {
    let _guard = SESSION_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let c = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes())
            .map_err(|_| LlamaError::Usage(format!("{}: path contains a NUL byte", p.display())))
    };
    let (i, o) = (c(input)?, c(output)?);
    // SAFETY: both paths are NUL-terminated strings valid for the call.
    let rc = unsafe {
        ffi::llorch_quantize_model(
            i.as_ptr(),
            o.as_ptr(),
            ftype.id,
            threads.max(1) as i32,
            i32::from(ftype.needs_imatrix),
        )
    };
    if rc != 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_are_unique() {
        assert_eq!(FileType::parse("q4_k_m").unwrap().id, 15);
        assert_eq!(FileType::parse("IQ4_XS").unwrap().id, 30);
        assert!(FileType::parse("Q4_K_X").is_none());
        let mut ids: Vec<i32> = FILE_TYPES.iter().map(|t| t.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), FILE_TYPES.len());
    }
}
