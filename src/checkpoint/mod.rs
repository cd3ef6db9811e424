//! The public contract shared by both producers and the judge: checkpoint names and graph
//! order ([`catalogue`]), the dump file format ([`format`], [`npy`]) and the folder manifest
//! ([`manifest`]).

pub mod catalogue;
pub mod folder;
pub mod format;
pub mod manifest;
pub mod npy;

pub use catalogue::{CheckpointName, Kind};
pub use folder::{DumpFolder, DumpWriter};
pub use format::{read_dump, write_dump, DumpError, Tensor};
pub use manifest::{KvType, Manifest};

/// The greedy choice both producers make after every step: the first index of the largest
/// logit (ties go to the lowest token id), so that equal logits give equal tokens.
pub fn greedy_token(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}
