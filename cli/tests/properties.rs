//! Round-trip properties of the Nix formats, over generated inputs: Nix base32 decodes what it
//! encodes for every length, a rendered narinfo parses back to the same value, and every NAR
//! the writer produces is accepted by the reader, describes the tree it came from, and
//! unpacked by stock Nix serialises back to the very same bytes.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hibernation::nix::nar::{dump_path, validate};
use hibernation::nix::{NarHash, NarInfo, StorePath, base32};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn base32_decode_inverts_encode(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let encoded = base32::encode(&bytes);
        prop_assert!(base32::is_nix32(&encoded) || bytes.is_empty());
        prop_assert_eq!(base32::decode(&encoded, bytes.len()).unwrap(), bytes);
    }

    #[test]
    fn rendered_narinfos_parse_back_to_the_same_value(info in narinfo()) {
        let text = info.render().unwrap();
        prop_assert_eq!(NarInfo::parse(&text).unwrap(), info);
    }

    #[test]
    fn the_reader_accepts_every_nar_the_writer_makes(tree in tree(3)) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        tree.create(&root);
        let mut nar = Vec::new();
        dump_path(&root, &mut nar).unwrap();
        let summary = validate(&nar[..]).unwrap();
        let (files, directories, symlinks) = tree.counts();
        prop_assert_eq!((summary.files, summary.directories, summary.symlinks), (files, directories, symlinks));
        // The same tree always gives the same bytes (what makes NarHash a content hash).
        let mut again = Vec::new();
        dump_path(&root, &mut again).unwrap();
        prop_assert_eq!(NarHash::digest(&again), NarHash::digest(&nar));
        // Stock Nix unpacks it, and the unpacked tree serialises back to the same bytes.
        let unpacked = tempfile::tempdir().unwrap();
        let restored = support::restore_with_nix(&nar, &unpacked).unwrap();
        let mut round_trip = Vec::new();
        dump_path(&restored, &mut round_trip).unwrap();
        prop_assert!(round_trip == nar, "re-serialised to {} bytes, not the {} Nix unpacked", round_trip.len(), nar.len());
        // Any truncation is refused.
        for cut in [1, nar.len() / 2, nar.len() - 1] {
            prop_assert!(validate(&nar[..cut]).is_err(), "a NAR cut at {} of {} was accepted", cut, nar.len());
        }
    }
}

/// Nix base32 store path hashes and names as Nix allows them.
fn store_path() -> impl Strategy<Value = StorePath> {
    (proptest::collection::vec(any::<u8>(), 20), "[a-zA-Z0-9+_?=-][a-zA-Z0-9+._?=-]{0,40}")
        .prop_filter_map("a valid base name", |(hash, name)| {
            StorePath::from_base_name(&format!("{}-{name}", base32::encode(&hash))).ok()
        })
}

fn nar_hash() -> impl Strategy<Value = NarHash> {
    proptest::array::uniform32(any::<u8>()).prop_map(NarHash)
}

/// Free text as a narinfo value may hold it: no line breaks, no leading or trailing space.
fn text() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,30}[!-~])?"
}

fn narinfo() -> impl Strategy<Value = NarInfo> {
    (
        store_path(),
        text(),
        prop_oneof![Just("zstd".to_string()), Just("xz".to_string()), Just("none".to_string())],
        proptest::option::of(nar_hash()),
        proptest::option::of(1..u64::MAX / 2),
        nar_hash(),
        1..u64::MAX / 2,
        proptest::collection::vec(store_path(), 0..5),
        proptest::option::of(store_path().prop_map(|p| p.base_name().to_string())),
        proptest::collection::vec(text(), 0..3),
        proptest::option::of(text()),
    )
        .prop_map(
            |(
                store_path,
                url,
                compression,
                file_hash,
                file_size,
                nar_hash,
                nar_size,
                references,
                deriver,
                signatures,
                ca,
            )| {
                NarInfo {
                    store_path,
                    url,
                    compression,
                    file_hash,
                    file_size,
                    nar_hash,
                    nar_size,
                    references,
                    deriver,
                    signatures,
                    ca,
                }
            },
        )
}

/// A file system tree to write, dump and read back.
#[derive(Debug, Clone)]
enum Tree {
    File { contents: Vec<u8>, executable: bool },
    Symlink(String),
    Directory(Vec<(String, Tree)>),
}

fn tree(depth: u32) -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..200), any::<bool>())
            .prop_map(|(contents, executable)| Tree::File { contents, executable }),
        "[a-z/._-]{1,20}".prop_map(Tree::Symlink),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        proptest::collection::btree_map("[a-zA-Z0-9._-]{1,12}", inner, 0..4).prop_map(|entries| {
            Tree::Directory(entries.into_iter().filter(|(name, _)| name != "." && name != "..").collect())
        })
    })
}

impl Tree {
    fn create(&self, path: &Path) {
        match self {
            Tree::File { contents, executable } => {
                std::fs::write(path, contents).unwrap();
                let mode = if *executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            Tree::Symlink(target) => std::os::unix::fs::symlink(target, path).unwrap(),
            Tree::Directory(entries) => {
                std::fs::create_dir(path).unwrap();
                for (name, child) in entries {
                    child.create(&path.join(name));
                }
            }
        }
    }

    /// (files, directories, symlinks).
    fn counts(&self) -> (u64, u64, u64) {
        match self {
            Tree::File { .. } => (1, 0, 0),
            Tree::Symlink(_) => (0, 0, 1),
            Tree::Directory(entries) => entries.iter().fold((0, 1, 0), |(f, d, s), (_, child)| {
                let (cf, cd, cs) = child.counts();
                (f + cf, d + cd, s + cs)
            }),
        }
    }
}
