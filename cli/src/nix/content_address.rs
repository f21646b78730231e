//! Nix content addresses (the narinfo `CA:` field): `text:sha256:<hash>` or
//! `fixed:[r:|git:]<algorithm>:<hash>`, the hash in nix32, hex or base64.

/// Digest sizes in bytes of the algorithms Nix accepts.
fn digest_size(algorithm: &str) -> Option<usize> {
    match algorithm {
        "md5" => Some(16),
        "sha1" => Some(20),
        "sha256" => Some(32),
        "sha512" => Some(64),
        _ => None,
    }
}

/// Is `hash` a digest of `size` bytes in one of the encodings Nix writes?
fn is_encoded_digest(hash: &str, size: usize) -> bool {
    const NIX32: &str = "0123456789abcdfghijklmnpqrsvwxyz";
    let nix32_len = (size * 8).div_ceil(5);
    let base64_len = size.div_ceil(3) * 4;
    if hash.len() == nix32_len && hash.chars().all(|c| NIX32.contains(c)) {
        return true;
    }
    if hash.len() == size * 2 && hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return true;
    }
    let unpadded = hash.trim_end_matches('=');
    hash.len() == base64_len
        && hash.len() - unpadded.len() <= 2
        && unpadded.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

/// Checks a content address as Nix writes it; says what is wrong otherwise.
pub fn validate(ca: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{ca:?} is not a Nix content address: {why}"));
    let rest = if let Some(rest) = ca.strip_prefix("text:") {
        if !rest.starts_with("sha256:") {
            return bad("text: addresses use sha256");
        }
        rest
    } else if let Some(rest) = ca.strip_prefix("fixed:") {
        rest.strip_prefix("r:").or_else(|| rest.strip_prefix("git:")).unwrap_or(rest)
    } else {
        return bad("it must start with text: or fixed:");
    };
    let Some((algorithm, hash)) = rest.split_once(':') else {
        return bad("the hash algorithm is missing");
    };
    let Some(size) = digest_size(algorithm) else {
        return bad("unknown hash algorithm");
    };
    if !is_encoded_digest(hash, size) {
        return bad("the hash is not a nix32, hex or base64 digest of the right length");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_what_nix_writes() {
        for ca in [
            "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
            "fixed:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
            "text:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
            "fixed:sha1:0123456789abcdef0123456789abcdef01234567",
            "fixed:r:sha256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
        ] {
            assert_eq!(validate(ca), Ok(()), "{ca}");
        }
    }

    #[test]
    fn refuses_anything_else() {
        for ca in [
            "",
            "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\nURL: nar/evil.nar",
            "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dq",
            "fixed:r:sha257:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
            "text:sha1:0123456789abcdef0123456789abcdef01234567",
            "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
            "fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqe",
        ] {
            assert!(validate(ca).is_err(), "{ca:?}");
        }
    }
}
