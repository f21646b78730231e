use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{MAGIC, padding};

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)?;
    out.write_all(&[0u8; 8][..padding(bytes.len() as u64)])
}

fn write_tokens(out: &mut impl Write, tokens: &[&str]) -> io::Result<()> {
    tokens.iter().try_for_each(|t| write_bytes(out, t.as_bytes()))
}

/// Serialises `path` (a file, symlink or directory) as a NAR into `out`, streaming file
/// contents; the output is identical to `nix-store --dump path`.
pub fn dump_path(path: &Path, out: &mut impl Write) -> io::Result<()> {
    write_bytes(out, MAGIC)?;
    dump_node(path, out)
}

fn dump_node(path: &Path, out: &mut impl Write) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let kind = meta.file_type();
    write_tokens(out, &["(", "type"])?;
    if kind.is_symlink() {
        write_tokens(out, &["symlink", "target"])?;
        write_bytes(out, fs::read_link(path)?.as_os_str().as_bytes())?;
    } else if kind.is_file() {
        write_tokens(out, &["regular"])?;
        if meta.permissions().mode() & 0o100 != 0 {
            write_tokens(out, &["executable", ""])?;
        }
        write_tokens(out, &["contents"])?;
        let mut file = fs::File::open(path)?;
        let len = meta.len();
        out.write_all(&len.to_le_bytes())?;
        let copied = io::copy(&mut (&mut file).take(len), out)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being read", path.display()),
            ));
        }
        out.write_all(&[0u8; 8][..padding(len)])?;
    } else if kind.is_dir() {
        write_tokens(out, &["directory"])?;
        let mut names: Vec<_> = fs::read_dir(path)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
        // Nix orders entries by the raw bytes of their names.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            write_tokens(out, &["entry", "(", "name"])?;
            write_bytes(out, name.as_bytes())?;
            write_tokens(out, &["node"])?;
            dump_node(&path.join(&name), out)?;
            write_tokens(out, &[")"])?;
        }
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file, directory or symlink", path.display()),
        ));
    }
    write_tokens(out, &[")"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Builds the tree that `cli/tests/fixtures/tree.nar` was dumped from with `nix-store --dump`.
    pub(crate) fn fixture_tree(root: &Path) {
        let tree = root.join("tree");
        for dir in ["bin", "empty", "nested/a/b"] {
            fs::create_dir_all(tree.join(dir)).unwrap();
        }
        fs::write(tree.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(tree.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(tree.join("file.txt"), "hello\n").unwrap();
        fs::set_permissions(tree.join("file.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        symlink("bin/app", tree.join("link")).unwrap();
        symlink("/nonexistent/target", tree.join("dangling")).unwrap();
        fs::write(tree.join("nested/a/b/deep.txt"), "deep\n").unwrap();
        fs::write(tree.join("zero"), "").unwrap();
        fs::write(tree.join("B-upper"), "upper\n").unwrap();
    }

    fn dump(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        dump_path(path, &mut out).unwrap();
        out
    }

    #[test]
    fn matches_nix_store_dump() {
        let dir = tempfile::tempdir().unwrap();
        fixture_tree(dir.path());
        let tree = dir.path().join("tree");
        assert_eq!(dump(&tree), include_bytes!("../../../tests/fixtures/tree.nar"));
        assert_eq!(dump(&tree.join("file.txt")), include_bytes!("../../../tests/fixtures/file.nar"));
        assert_eq!(dump(&tree.join("link")), include_bytes!("../../../tests/fixtures/symlink.nar"));
    }

    #[test]
    fn missing_path_is_an_error() {
        assert!(dump_path(Path::new("/nonexistent/hibernation"), &mut Vec::new()).is_err());
    }
}
