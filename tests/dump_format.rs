//! The dump format as a contract: exact round trip and clear rejection of broken files.

mod common;

use llorch_diff::checkpoint::catalogue::CheckpointName;
use llorch_diff::checkpoint::{read_dump, write_dump, DumpFolder, DumpWriter, Manifest, Tensor};

#[test]
fn round_trip_is_exact() {
    let dir = common::scratch("dump_round_trip");
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        1e-45,
        f32::NAN,
        f32::INFINITY,
    ];
    let data: Vec<f32> = (0..6 * 7 * 5)
        .map(|i| specials[i % specials.len()] * (i as f32 + 0.5))
        .collect();
    let t = Tensor::new(vec![6, 7, 5], data);
    let p = dir.join("x.bin");
    write_dump(&p, &t).unwrap();
    let back = read_dump(&p).unwrap();
    assert_eq!(back.shape, t.shape);
    assert!(back
        .data
        .iter()
        .zip(&t.data)
        .all(|(a, b)| a.to_bits() == b.to_bits()));

    let mut w = DumpWriter::create(&dir.join("folder"), Manifest::new("test")).unwrap();
    w.add(0, &CheckpointName::parse("blk.0.l_out"), &t).unwrap();
    w.finish().unwrap();
    let f = DumpFolder::open(&dir.join("folder")).unwrap();
    let again = f.load(&f.entries[0]).unwrap();
    assert!(again
        .data
        .iter()
        .zip(&t.data)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn truncated_dump_is_rejected_clearly() {
    let dir = common::scratch("dump_truncated");
    let p = dir.join("t.bin");
    write_dump(&p, &Tensor::new(vec![4, 8], vec![1.5; 32])).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 3, 10, 20, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = read_dump(&p).unwrap_err().to_string();
        assert!(
            err.contains("t.bin")
                && (err.contains("truncated") || err.contains("needs") || err.contains("shorter")),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn writer_never_clobbers_a_foreign_folder() {
    let dir = common::scratch("dump_clobber");
    let precious = dir.join("src");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("main.rs"), "fn main() {}").unwrap();
    assert!(DumpWriter::create(&precious, Manifest::new("test")).is_err());
    assert!(precious.join("main.rs").exists());
}
