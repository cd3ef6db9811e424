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
