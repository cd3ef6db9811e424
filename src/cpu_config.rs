//! The settings of llama.cpp's CPU backend that decide which kernel a matmul runs, and so its
//! arithmetic. llama.cpp reads them at run time; both producers record them in their manifest,
//! and the reference in ggml mode follows the ones it was given.

use std::collections::BTreeMap;

/// Environment variables that ggml-cpu reads and that change results, with the value ggml
/// assumes when the variable is unset.
pub const ENV_SWITCHES: &[&str] = &[
    "GGML_CPU_TILED_MM",
    "GGML_CPU_TILED_MM_FORCE",
    "GGML_CPU_DISABLE_FUSION",
];

/// How llama.cpp's CPU backend is configured for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuConfig {
    /// Weights with a repacked layout (Q4_0, Q4_K, IQ4_NL, MXFP4 with a multiple of 8 rows on
    /// AVX2) are loaded into the repack buffer and multiplied by its GEMM/GEMV kernels
    /// (llama.cpp's default; `--no-repack` turns it off, as in llama.cpp's own tools).
    pub repack: bool,
    /// `GGML_CPU_TILED_MM` (default on): the tiled GEMM for K-quant and I-quant weights.
    pub tiled_mm: bool,
    /// `GGML_CPU_TILED_MM_FORCE=1`: the tiled GEMM even below eight activation rows.
    pub tiled_mm_force: bool,
    /// `GGML_CPU_DISABLE_FUSION=1` switches off the fused RMS norm + multiply. The fused and
    /// unfused kernels compute `x * scale * w` in the same order, so it changes no result; it
    /// is recorded so that a run can be reproduced as it was made.
    pub fusion: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            repack: true,
            tiled_mm: true,
            tiled_mm_force: false,
            fusion: true,
        }
    }
}

impl CpuConfig {
    /// The configuration this process gives llama.cpp: ggml's reading of the environment
    /// (`atoi(value) != 0` enables the tiled GEMM, `== 1` forces it or disables fusion).
    pub fn from_env(repack: bool) -> CpuConfig {
        let atoi = |name: &str| std::env::var(name).ok().map(|v| c_atoi(&v));
        CpuConfig {
            repack,
            tiled_mm: atoi("GGML_CPU_TILED_MM").is_none_or(|v| v != 0),
            tiled_mm_force: atoi("GGML_CPU_TILED_MM_FORCE") == Some(1),
            fusion: atoi("GGML_CPU_DISABLE_FUSION") != Some(1),
        }
    }

    /// The manifest's `producer_detail` entries for this configuration.
    pub fn record(&self, detail: &mut BTreeMap<String, String>) {
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        detail.insert("cpu_repack".into(), on(self.repack));
        detail.insert("cpu_tiled_mm".into(), on(self.tiled_mm));
        detail.insert("cpu_tiled_mm_force".into(), on(self.tiled_mm_force));
        detail.insert("cpu_fusion".into(), on(self.fusion));
    }

    /// The configuration a manifest records, if it records one.
    pub fn from_record(detail: &BTreeMap<String, String>) -> Option<CpuConfig> {
        let get = |k: &str| match detail.get(k).map(String::as_str) {
            Some("on") => Some(true),
            Some("off") => Some(false),
            _ => None,
        };
        Some(CpuConfig {
            repack: get("cpu_repack")?,
            tiled_mm: get("cpu_tiled_mm")?,
            tiled_mm_force: get("cpu_tiled_mm_force")?,
            fusion: get("cpu_fusion")?,
        })
    }

    /// One line for humans: what differs from llama.cpp's defaults.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if !self.repack {
            parts.push("no repack");
        }
        if !self.tiled_mm {
            parts.push("GGML_CPU_TILED_MM=0");
        }
        if self.tiled_mm_force {
            parts.push("GGML_CPU_TILED_MM_FORCE=1");
        }
        if !self.fusion {
            parts.push("GGML_CPU_DISABLE_FUSION=1");
        }
        if parts.is_empty() {
            "llama.cpp defaults".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// C's `atoi`: optional whitespace and sign, then leading digits; 0 when there are none.
fn c_atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_reads_like_c() {
        assert_eq!(c_atoi("0"), 0);
        assert_eq!(c_atoi(" 1x"), 1);
        assert_eq!(c_atoi("yes"), 0);
        assert_eq!(c_atoi("-2"), -2);
    }

    #[test]
    fn record_round_trips() {
        let c = CpuConfig {
            repack: false,
            tiled_mm: true,
            tiled_mm_force: true,
            fusion: false,
        };
        let mut d = BTreeMap::new();
        c.record(&mut d);
        assert_eq!(CpuConfig::from_record(&d), Some(c));
        assert_eq!(CpuConfig::from_record(&BTreeMap::new()), None);
    }
}
