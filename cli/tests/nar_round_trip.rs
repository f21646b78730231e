//! Any NAR the reader accepts is canonical: stock Nix unpacks it (`nix-store --restore`), and
//! the writer serialises the unpacked tree back to the very same bytes. Checked over every NAR
//! the fuzzer kept (`fuzz/corpus/nar`, most of which are malformed on purpose) and the NARs
//! `nix-store --dump` made for the fixtures.

mod support;

use std::path::PathBuf;

use hibernation::nix::nar::{dump_path, validate};
use support::restore_with_nix;

fn corpus() -> Vec<PathBuf> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = [fuzz.join("corpus/nar"), fuzz.join("regressions/nar"), fixtures]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    files
}

#[test]
fn every_nar_the_reader_accepts_unpacks_with_nix_and_serialises_back_byte_for_byte() {
    let mut accepted = 0;
    for file in corpus() {
        let nar = std::fs::read(&file).unwrap();
        if file.extension().is_some_and(|e| e == "narinfo") || validate(&nar[..]).is_err() {
            continue;
        }
        accepted += 1;
        let dir = tempfile::tempdir().unwrap();
        let root = restore_with_nix(&nar, &dir)
            .unwrap_or_else(|e| panic!("{}: accepted here, refused by nix-store --restore: {e}", file.display()));
        let mut again = Vec::new();
        dump_path(&root, &mut again).unwrap();
        assert!(
            again == nar,
            "{}: re-serialised to different bytes ({} vs {})",
            file.display(),
            again.len(),
            nar.len()
        );
    }
    assert!(accepted >= 8, "only {accepted} valid NARs in fuzz/corpus/nar and the fixtures: run fuzz/seed");
}
