//! ggml tensor types and their block formats.
//!
//! Ids, block sizes and byte sizes follow ggml.h / ggml.c (`type_traits`) of the pinned tree.
//!
//! The codecs reproduce ggml bit for bit (tests/quant_ggml.rs proves them against ggml itself
//! through `llamacpp::ggml`):
//! - [`dequantize_row`]: `type_traits[ty].to_float` (ggml-quants.c `dequantize_row_*`);
//! - [`quantize_row`]: `type_traits[ty].from_float_ref`, how ggml writes weights;
//! - [`quantize_activation`]: `type_traits_cpu[ty].from_float` as compiled for x86-64-v3, how a
//!   CPU matmul rounds its activations;
//! - [`vec_dot`]: `type_traits_cpu[ty].vec_dot`, the CPU matmul's row dot product;
//! - [`dot_exact`]: a dot of the dequantized weights with f32 activations, accumulated in f64.
//!
//! The row functions used inside matmuls ([`dequantize_row`], [`dot_exact`], [`vec_dot`]) run a
//! copy compiled for AVX2/FMA/F16C when the CPU has them; both copies give identical bits
//! (`f32::mul_add` is a fused multiply-add either way, and the explicit AVX2 sequences compute
//! the same integers and exact products as the portable code; the tests check both).
//!
//! One thing is outside "bit for bit": which NaN comes out when two NaNs meet in one
//! operation. x86 returns the first operand's, but neither GCC nor LLVM promises to keep the
//! operand order of `+`, so ggml's own answer there is an accident of its compilation. The
//! dequantizers spell that rule out for NaN block offsets (tested); the quantizers and
//! `vec_dot` match ggml for NaNs without payload (`f32::NAN`, what arithmetic produces) but
//! not necessarily for arbitrary payloads in the input.

// The codecs index their blocks the way the C they reproduce does.
#[allow(clippy::needless_range_loop)]
mod activation;
#[allow(clippy::needless_range_loop)]
mod dequant;
#[allow(clippy::needless_range_loop)]
mod dequant_iq;
#[allow(clippy::needless_range_loop)]
mod exact;
mod fp;
#[allow(clippy::needless_range_loop)]
mod multi;
#[allow(clippy::needless_range_loop)]
mod quantize;
pub mod repack;
mod tables;
pub mod tiled;
#[allow(clippy::needless_range_loop)]
mod vecdot;
#[allow(clippy::needless_range_loop)]
mod vecdot_iq;

pub use multi::{has_batched_vec_dot, vec_dot_block, ActRows};

pub use fp::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16_ggml};

use std::fmt;

/// A ggml tensor type, by its on-disk id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    IQ2XXS,
    IQ2XS,
    IQ3XXS,
    IQ1S,
    IQ4NL,
    IQ3S,
    IQ2S,
    IQ4XS,
    IQ1M,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

/// A type id that this crate does not know: not in ggml.h, or one whose support ggml removed
/// (then named, e.g. id 4 is `q4_2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_unknown(*.0))]
pub struct UnknownType(pub u32);

/// The names ggml.h keeps in comments for the ids it no longer supports.
fn removed_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        4 => "q4_2",
        5 => "q4_3",
        31 => "q4_0_4_4",
        32 => "q4_0_4_8",
        33 => "q4_0_8_8",
        36 => "iq4_nl_4_4",
        37 => "iq4_nl_4_8",
        38 => "iq4_nl_8_8",
        _ => return None,
    })
}

fn describe_unknown(id: u32) -> String {
    match removed_type_name(id) {
        Some(name) => format!("ggml type id {id} ({name}), whose support ggml has removed"),
        None => format!("unknown ggml type id {id}"),
    }
}

impl GgmlType {
    pub fn from_id(id: u32) -> Result<Self, UnknownType> {
        use GgmlType::*;
        Ok(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            16 => IQ2XXS,
            17 => IQ2XS,
            18 => IQ3XXS,
            19 => IQ1S,
            20 => IQ4NL,
            21 => IQ3S,
            22 => IQ2S,
            23 => IQ4XS,
            29 => IQ1M,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            42 => Q2_0,
            other => return Err(UnknownType(other)),
        })
    }

    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            IQ2XXS => 16,
            IQ2XS => 17,
            IQ3XXS => 18,
            IQ1S => 19,
            IQ4NL => 20,
            IQ3S => 21,
            IQ2S => 22,
            IQ4XS => 23,
            IQ1M => 29,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
            Q2_0 => 42,
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4NL | MXFP4 => 32,
            Q2_0 | NVFP4 => 64,
            Q1_0 => 128,
            Q2K | Q3K | Q4K | Q5K | Q6K | Q8K => 256,
            IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ1S | IQ1M | IQ4XS | TQ1_0 | TQ2_0 => 256,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | I32 => 4,
            F16 | BF16 | I16 => 2,
            I8 => 1,
            I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2K => 84,
            Q3K => 110,
            Q4K => 144,
            Q5K => 176,
            Q6K => 210,
            Q8K => 292,
            IQ2XXS => 66,
            IQ2XS => 74,
            IQ3XXS => 98,
            IQ1S => 50,
            IQ4NL => 18,
            IQ3S => 110,
            IQ2S => 82,
            IQ4XS => 136,
            IQ1M => 56,
            TQ1_0 => 54,
            TQ2_0 => 66,
            MXFP4 => 17,
            NVFP4 => 36,
            Q1_0 => 18,
            Q2_0 => 18,
        }
    }

    /// Bytes of a row of `n` elements, or None when `n` is not a whole number of blocks.
    pub fn row_size(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }

    /// ggml's lower-case name (`q4_1`, `f16`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "f32",
            F16 => "f16",
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q8_1 => "q8_1",
            Q2K => "q2_K",
            Q3K => "q3_K",
            Q4K => "q4_K",
            Q5K => "q5_K",
            Q6K => "q6_K",
            Q8K => "q8_K",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            F64 => "f64",
            BF16 => "bf16",
            IQ2XXS => "iq2_xxs",
            IQ2XS => "iq2_xs",
            IQ3XXS => "iq3_xxs",
            IQ1S => "iq1_s",
            IQ4NL => "iq4_nl",
            IQ3S => "iq3_s",
            IQ2S => "iq2_s",
            IQ4XS => "iq4_xs",
            IQ1M => "iq1_m",
            TQ1_0 => "tq1_0",
            TQ2_0 => "tq2_0",
            MXFP4 => "mxfp4",
            NVFP4 => "nvfp4",
            Q1_0 => "q1_0",
            Q2_0 => "q2_0",
        }
    }

    /// Parses a name as written on the command line (case-insensitive: `q4_k`, `Q8_0`, `f16`).
    pub fn parse_name(s: &str) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        ALL.iter()
            .copied()
            .find(|t| t.name().to_ascii_lowercase() == lower)
    }
}

const ALL: [GgmlType; 35] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
    GgmlType::I8,
    GgmlType::I16,
    GgmlType::I32,
    GgmlType::I64,
    GgmlType::F64,
    GgmlType::BF16,
    GgmlType::IQ2XXS,
    GgmlType::IQ2XS,
    GgmlType::IQ3XXS,
    GgmlType::IQ1S,
    GgmlType::IQ4NL,
    GgmlType::IQ3S,
    GgmlType::IQ2S,
    GgmlType::IQ4XS,
    GgmlType::IQ1M,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::MXFP4,
    GgmlType::NVFP4,
    GgmlType::Q1_0,
    GgmlType::Q2_0,
];

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a quantization routine refused its input. Every message names the type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{ty}: {op} is not supported for this type")]
    Unsupported { ty: GgmlType, op: &'static str },
    #[error("{ty}: {n} elements is not a whole number of {block}-element blocks")]
    PartialBlock {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{ty}: {what} has {got} bytes, but {n} elements take {expected}")]
    ByteLength {
        ty: GgmlType,
        what: &'static str,
        n: usize,
        expected: usize,
        got: usize,
    },
    #[error("{ty}: {what} has {got} elements, expected {expected}")]
    ElementCount {
        ty: GgmlType,
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

/// Bytes of `n` elements of `ty`, or the error naming the partial block.
fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    ty.row_size(n).ok_or(QuantError::PartialBlock {
        ty,
        n,
        block: ty.block_size(),
    })
}

fn check_bytes(ty: GgmlType, what: &'static str, n: usize, got: usize) -> Result<(), QuantError> {
    let expected = row_bytes(ty, n)?;
    if got != expected {
        return Err(QuantError::ByteLength {
            ty,
            what,
            n,
            expected,
            got,
        });
    }
    Ok(())
}

/// Whether the AVX2/FMA/F16C copies of the hot loops can run here.
#[inline]
fn has_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compiles `$body` twice, once for the baseline and once for x86-64-v3, and picks at run time.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $t:ty),*) -> $ret:ty $body:block) => {
        #[inline]
        fn $name($($arg: $t),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $t),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn v3($($arg: $t),*) -> $ret {
                generic($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if has_v3() {
                // SAFETY: the CPU supports the features `v3` was compiled for.
                return unsafe { v3($($arg),*) };
            }
            generic($($arg),*)
        }
    };
}

fn can_dequantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q8_1
            | Q2K
            | Q3K
            | Q4K
            | Q5K
            | Q6K
            | Q8K
            | IQ4NL
            | IQ4XS
            | MXFP4
            | IQ2XXS
            | IQ2XS
            | IQ2S
            | IQ3XXS
            | IQ3S
            | IQ1S
            | IQ1M
            | TQ1_0
            | TQ2_0
    )
}

multiversion! {
    fn dequantize_dispatch(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> () {
        use GgmlType::*;
        match ty {
            F32 => dequant::row_f32(src, dst),
            F16 => dequant::row_f16(src, dst),
            BF16 => dequant::row_bf16(src, dst),
            Q4_0 => dequant::row::<dequant::Q4_0>(src, dst),
            Q4_1 => dequant::row::<dequant::Q4_1>(src, dst),
            Q5_0 => dequant::row::<dequant::Q5_0>(src, dst),
            Q5_1 => dequant::row::<dequant::Q5_1>(src, dst),
            Q8_0 => dequant::row::<dequant::Q8_0>(src, dst),
            Q8_1 => dequant::row::<dequant::Q8_1>(src, dst),
            Q2K => dequant::row::<dequant::Q2K>(src, dst),
            Q3K => dequant::row::<dequant::Q3K>(src, dst),
            Q4K => dequant::row::<dequant::Q4K>(src, dst),
            Q5K => dequant::row::<dequant::Q5K>(src, dst),
            Q6K => dequant::row::<dequant::Q6K>(src, dst),
            Q8K => dequant::row::<dequant::Q8K>(src, dst),
            IQ4NL => dequant::row::<dequant_iq::IQ4NL>(src, dst),
            IQ4XS => dequant::row::<dequant_iq::IQ4XS>(src, dst),
            MXFP4 => dequant::row::<dequant_iq::MXFP4>(src, dst),
            IQ2XXS => dequant::row::<dequant_iq::IQ2XXS>(src, dst),
            IQ2XS => dequant::row::<dequant_iq::IQ2XS>(src, dst),
            IQ2S => dequant::row::<dequant_iq::IQ2S>(src, dst),
            IQ3XXS => dequant::row::<dequant_iq::IQ3XXS>(src, dst),
            IQ3S => dequant::row::<dequant_iq::IQ3S>(src, dst),
            IQ1S => dequant::row::<dequant_iq::IQ1S>(src, dst),
            IQ1M => dequant::row::<dequant_iq::IQ1M>(src, dst),
            TQ1_0 => dequant::row::<dequant_iq::TQ1_0>(src, dst),
            TQ2_0 => dequant::row::<dequant_iq::TQ2_0>(src, dst),
            I8 | I16 | I32 | I64 | F64 | NVFP4 | Q1_0 | Q2_0 => {}
        }
    }
}

/// Decodes `dst.len()` elements from exactly `row_size(dst.len())` bytes, as ggml's `to_float`.
///
/// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS, MXFP4, IQ2_XXS,
/// IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0 and TQ2_0 match ggml bit for bit; Q8_1 and
/// Q8_K (which ggml never dequantizes) are `d * q`. NVFP4, Q1_0 and Q2_0 are known by name but
/// not decoded (an `Unsupported` error naming them).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !can_dequantize(ty) {
        return Err(QuantError::Unsupported {
            ty,
            op: "dequantize",
        });
    }
    check_bytes(ty, "source row", dst.len(), src.len())?;
    dequantize_dispatch(ty, src, dst);
    Ok(())
}

/// ggml's reference quantizer (ggml-quants.c `quantize_row_*_ref`, `from_float_ref`): how ggml
/// writes weights. `dst` must be exactly `row_size(src.len())` bytes.
///
/// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
/// and Q8_K.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    use GgmlType::*;
    let per_block: fn(&[f32], &mut [u8]) = match ty {
        F32 => return fill_row(ty, src, dst, quantize::row_f32),
        F16 => return fill_row(ty, src, dst, quantize::row_f16),
        BF16 => return fill_row(ty, src, dst, quantize::row_bf16),
        Q4_0 => quantize::q4_0,
        Q4_1 => quantize::q4_1,
        Q5_0 => quantize::q5_0,
        Q5_1 => quantize::q5_1,
        Q8_0 => quantize::q8_0,
        Q8_1 => quantize::q8_1,
        Q2K => quantize::q2_k,
        Q3K => quantize::q3_k,
        Q4K => quantize::q4_k,
        Q5K => quantize::q5_k,
        Q6K => quantize::q6_k,
        Q8K => quantize::q8_k,
        I8 | I16 | I32 | I64 | F64 | IQ2XXS | IQ2XS | IQ3XXS | IQ1S | IQ4NL | IQ3S | IQ2S
        | IQ4XS | IQ1M | TQ1_0 | TQ2_0 | MXFP4 | NVFP4 | Q1_0 | Q2_0 => {
            return Err(QuantError::Unsupported { ty, op: "quantize" })
        }
    };
    blocks_row(ty, src, dst, per_block)
}

fn fill_row(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    f: fn(&[f32], &mut [u8]),
) -> Result<(), QuantError> {
    check_bytes(ty, "destination row", src.len(), dst.len())?;
    f(src, dst);
    Ok(())
}

fn blocks_row(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    f: fn(&[f32], &mut [u8]),
) -> Result<(), QuantError> {
    check_bytes(ty, "destination row", src.len(), dst.len())?;
    for (x, y) in src
        .chunks_exact(ty.block_size())
        .zip(dst.chunks_exact_mut(ty.type_size()))
    {
        f(x, y);
    }
    Ok(())
}

/// The CPU backend's activation quantizer, `type_traits_cpu[ty].from_float` as compiled here
/// (x86-64-v3: AVX2, F16C, FMA): what a matmul does to its activations before `vec_dot`.
///
/// Q8_0 and Q8_1 follow the AVX2 code of ggml-cpu/arch/x86/quants.c, F16 uses F16C for whole
/// groups of four, and the other types call their `_ref` quantizer as ggml does.
pub fn quantize_activation(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    use GgmlType::*;
    match ty {
        Q8_0 | Q8_1 => {
            check_bytes(ty, "destination row", src.len(), dst.len())?;
            q8_activation_row(ty == Q8_1, src, dst);
            Ok(())
        }
        F16 => fill_row(ty, src, dst, activation::row_f16),
        _ => quantize_row(ty, src, dst),
    }
}

multiversion! {
    // The x86-64-v3 copy rounds with `vroundps` instead of a call per element.
    fn q8_activation_row(q8_1: bool, src: &[f32], dst: &mut [u8]) -> () {
        if q8_1 {
            for (x, y) in src.chunks_exact(32).zip(dst.chunks_exact_mut(36)) {
                activation::q8_1(x, y);
            }
        } else {
            for (x, y) in src.chunks_exact(32).zip(dst.chunks_exact_mut(34)) {
                activation::q8_0(x, y);
            }
        }
    }
}

/// `type_traits_cpu[weight].vec_dot_type`: the type activations are quantized to before a dot
/// with a `weight` row. Types without a CPU dot product have ggml's zero entry, F32.
pub fn vec_dot_type(weight: GgmlType) -> GgmlType {
    use GgmlType::*;
    match weight {
        F16 => F16,
        BF16 => BF16,
        Q4_0 | Q5_0 | Q8_0 | IQ4NL | MXFP4 | NVFP4 | Q1_0 | Q2_0 => Q8_0,
        Q4_1 | Q5_1 | Q8_1 => Q8_1,
        Q2K | Q3K | Q4K | Q5K | Q6K => Q8K,
        IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ1S | IQ1M | IQ4XS | TQ1_0 | TQ2_0 => Q8K,
        F32 | Q8K | I8 | I16 | I32 | I64 | F64 => F32,
    }
}

/// Runs [`vec_dot_rows`] with ggml's AVX2 integer sequences where the CPU has them.
#[inline]
fn vec_dot_dispatch(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn v3(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
            vec_dot_rows::<vecdot::Avx2>(ty, w, a, n)
        }
        if has_v3() {
            // SAFETY: the CPU supports the features `v3` was compiled for.
            return unsafe { v3(ty, w, a, n) };
        }
    }
    vec_dot_rows::<vecdot::Portable>(ty, w, a, n)
}

#[inline(always)]
fn vec_dot_rows<I: vecdot::Isa>(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    use GgmlType::*;
    match ty {
        F32 => vecdot::f32_dot(w, a, n),
        F16 => vecdot::f16_dot(w, a, n),
        BF16 => vecdot::bf16_dot(w, a, n),
        Q4_0 => vecdot::q4_0::<I>(w, a),
        Q4_1 => vecdot::q4_1::<I>(w, a),
        Q5_0 => vecdot::q5_0::<I>(w, a),
        Q5_1 => vecdot::q5_1::<I>(w, a),
        Q8_0 => vecdot::q8_0::<I>(w, a),
        Q2K => vecdot::q2_k::<I>(w, a),
        Q3K => vecdot::q3_k::<I>(w, a),
        Q4K => vecdot::q4_k::<I>(w, a),
        Q5K => vecdot::q5_k::<I>(w, a),
        Q6K => vecdot::q6_k::<I>(w, a),
        IQ4NL => vecdot_iq::iq4_nl::<I>(w, a),
        IQ4XS => vecdot_iq::iq4_xs::<I>(w, a),
        MXFP4 => vecdot_iq::mxfp4::<I>(w, a),
        IQ3S => vecdot_iq::iq3_s::<I>(w, a),
        IQ3XXS => vecdot_iq::iq3_xxs::<I>(w, a),
        IQ2S => vecdot_iq::iq2_s::<I>(w, a),
        IQ2XS => vecdot_iq::iq2_xs::<I>(w, a),
        IQ2XXS => vecdot_iq::iq2_xxs::<I>(w, a),
        IQ1M => vecdot_iq::iq1_m::<I>(w, a),
        IQ1S => vecdot_iq::iq1_s::<I>(w, a),
        TQ2_0 => vecdot_iq::tq2_0::<I>(w, a),
        TQ1_0 => vecdot_iq::tq1_0::<I>(w, a),
        _ => 0.0,
    }
}

fn check_vec_dot(
    ty: GgmlType,
    weight_row: &[u8],
    act_row: &[u8],
    n: usize,
) -> Result<(), QuantError> {
    if !has_vec_dot(ty) {
        return Err(QuantError::Unsupported { ty, op: "vec_dot" });
    }
    check_bytes(ty, "weight row", n, weight_row.len())?;
    let act_ty = vec_dot_type(ty);
    let expected = row_bytes(act_ty, n)?;
    if act_row.len() != expected {
        return Err(QuantError::ByteLength {
            ty,
            what: "activation row",
            n,
            expected,
            got: act_row.len(),
        });
    }
    Ok(())
}

/// Whether [`vec_dot`] (and so the reference's ggml-mode matmul) handles weights of `ty`.
pub fn has_vec_dot(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2K
            | Q3K
            | Q4K
            | Q5K
            | Q6K
            | IQ4NL
            | IQ4XS
            | MXFP4
            | IQ3S
            | IQ3XXS
            | IQ2S
            | IQ2XS
            | IQ2XXS
            | IQ1M
            | IQ1S
            | TQ2_0
            | TQ1_0
    )
}

/// ggml's CPU dot product (`type_traits_cpu[ty].vec_dot`) of a weight row with an activation
/// row already quantized to [`vec_dot_type`]`(ty)` (e.g. by [`quantize_activation`]).
///
/// Supported weight types: those of [`has_vec_dot`]. Each
/// kernel mirrors the AVX2 code of its ggml function (see `vecdot.rs`) and reproduces it bit
/// for bit.
pub fn vec_dot(
    ty: GgmlType,
    weight_row: &[u8],
    act_row: &[u8],
    n: usize,
) -> Result<f32, QuantError> {
    check_vec_dot(ty, weight_row, act_row, n)?;
    Ok(vec_dot_dispatch(ty, weight_row, act_row, n))
}

/// llamafile's `tinyBLAS_Q0_AVX` (ggml-cpu/llamafile/sgemm.cpp) for one output: what the CPU
/// backend runs instead of `vec_dot` for IQ4_NL weights when a matmul has two or more
/// activation rows. The activation row is Q8_0, as for [`vec_dot`].
pub fn sgemm_q0_dot(
    ty: GgmlType,
    weight_row: &[u8],
    act_row: &[u8],
    n: usize,
) -> Result<f32, QuantError> {
    if ty != GgmlType::IQ4NL {
        return Err(QuantError::Unsupported {
            ty,
            op: "tinyBLAS_Q0 GEMM",
        });
    }
    check_vec_dot(ty, weight_row, act_row, n)?;
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn v3(w: &[u8], a: &[u8]) -> f32 {
            vecdot_iq::iq4_nl_sgemm::<vecdot::Avx2>(w, a)
        }
        if has_v3() {
            // SAFETY: the CPU supports the features `v3` was compiled for.
            return Ok(unsafe { v3(weight_row, act_row) });
        }
    }
    Ok(vecdot_iq::iq4_nl_sgemm::<vecdot::Portable>(
        weight_row, act_row,
    ))
}

/// [`vec_dot`] through the portable integer code only, whatever the CPU: lets tests check the
/// path taken on CPUs without AVX2 against ggml too.
#[doc(hidden)]
pub fn vec_dot_portable(
    ty: GgmlType,
    weight_row: &[u8],
    act_row: &[u8],
    n: usize,
) -> Result<f32, QuantError> {
    check_vec_dot(ty, weight_row, act_row, n)?;
    Ok(vec_dot_rows::<vecdot::Portable>(ty, weight_row, act_row, n))
}

/// Runs [`dot_exact_rows`] with the AVX2 accumulator where the CPU has it.
#[inline]
fn dot_exact_dispatch(ty: GgmlType, w: &[u8], x: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn v3(ty: GgmlType, w: &[u8], x: &[f32]) -> f64 {
            dot_exact_rows::<exact::Avx2>(ty, w, x)
        }
        if has_v3() {
            // SAFETY: the CPU supports the features `v3` was compiled for.
            return unsafe { v3(ty, w, x) };
        }
    }
    dot_exact_rows::<exact::Portable>(ty, w, x)
}

#[inline(always)]
fn dot_exact_rows<A: exact::Accumulate>(ty: GgmlType, w: &[u8], x: &[f32]) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => exact::f32_row::<A>(w, x),
        F16 => exact::f16_row::<A>(w, x),
        BF16 => exact::bf16_row::<A>(w, x),
        Q4_0 => exact::blocks::<dequant::Q4_0, A>(w, x),
        Q4_1 => exact::blocks::<dequant::Q4_1, A>(w, x),
        Q5_0 => exact::blocks::<dequant::Q5_0, A>(w, x),
        Q5_1 => exact::blocks::<dequant::Q5_1, A>(w, x),
        Q8_0 => exact::blocks::<dequant::Q8_0, A>(w, x),
        Q8_1 => exact::blocks::<dequant::Q8_1, A>(w, x),
        Q2K => exact::blocks::<dequant::Q2K, A>(w, x),
        Q3K => exact::blocks::<dequant::Q3K, A>(w, x),
        Q4K => exact::blocks::<dequant::Q4K, A>(w, x),
        Q5K => exact::blocks::<dequant::Q5K, A>(w, x),
        Q6K => exact::blocks::<dequant::Q6K, A>(w, x),
        Q8K => exact::blocks::<dequant::Q8K, A>(w, x),
        IQ4NL => exact::blocks::<dequant_iq::IQ4NL, A>(w, x),
        IQ4XS => exact::blocks::<dequant_iq::IQ4XS, A>(w, x),
        MXFP4 => exact::blocks::<dequant_iq::MXFP4, A>(w, x),
        IQ2XXS => exact::blocks::<dequant_iq::IQ2XXS, A>(w, x),
        IQ2XS => exact::blocks::<dequant_iq::IQ2XS, A>(w, x),
        IQ2S => exact::blocks::<dequant_iq::IQ2S, A>(w, x),
        IQ3XXS => exact::blocks::<dequant_iq::IQ3XXS, A>(w, x),
        IQ3S => exact::blocks::<dequant_iq::IQ3S, A>(w, x),
        IQ1S => exact::blocks::<dequant_iq::IQ1S, A>(w, x),
        IQ1M => exact::blocks::<dequant_iq::IQ1M, A>(w, x),
        TQ1_0 => exact::blocks::<dequant_iq::TQ1_0, A>(w, x),
        TQ2_0 => exact::blocks::<dequant_iq::TQ2_0, A>(w, x),
        I8 | I16 | I32 | I64 | F64 | NVFP4 | Q1_0 | Q2_0 => 0.0,
    }
}

/// [`dot_exact_f64`] through the portable accumulator only, whatever the CPU: lets tests check
/// that both accumulators give the same bits.
#[doc(hidden)]
pub fn dot_exact_f64_portable(
    ty: GgmlType,
    weight_row: &[u8],
    x: &[f32],
) -> Result<f64, QuantError> {
    if !can_dequantize(ty) {
        return Err(QuantError::Unsupported {
            ty,
            op: "dot_exact",
        });
    }
    check_bytes(ty, "weight row", x.len(), weight_row.len())?;
    Ok(dot_exact_rows::<exact::Portable>(ty, weight_row, x))
}

/// Dot of a weight row (dequantized block by block exactly as [`dequantize_row`], into a stack
/// buffer) with f32 `x`, the products and their sum in f64, rounded once to f32 at the end.
/// `weight_row` must be exactly `row_size(x.len())` bytes.
#[inline]
pub fn dot_exact(ty: GgmlType, weight_row: &[u8], x: &[f32]) -> Result<f32, QuantError> {
    dot_exact_f64(ty, weight_row, x).map(|v| v as f32)
}

/// [`dot_exact`] before the final rounding to f32.
#[inline]
pub fn dot_exact_f64(ty: GgmlType, weight_row: &[u8], x: &[f32]) -> Result<f64, QuantError> {
    if !can_dequantize(ty) {
        return Err(QuantError::Unsupported {
            ty,
            op: "dot_exact",
        });
    }
    check_bytes(ty, "weight row", x.len(), weight_row.len())?;
    Ok(dot_exact_dispatch(ty, weight_row, x))
}
