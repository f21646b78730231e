//! HTTP header values the cache protocol reads: the credentials of `Authorization` and a
//! single `Range`. Plain string parsing, kept here (not in the server) so the fuzz targets and
//! property tests reach them without a web framework.

use base64::Engine;

/// The API token an `Authorization` value carries: a Bearer token, or the password of HTTP
/// Basic (the user name is ignored, so a netrc line works with stock Nix). None for any other
/// scheme or a malformed value.
pub fn credentials_token(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

/// What a `Range` header asks of a body of known length.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ByteRange {
    Full,
    /// Half-open byte range `[start, end)`, never empty, never past the end.
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range; several ranges or other units get the whole body.
pub fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = if first.is_empty() {
        // Suffix range: the last N bytes.
        match last.parse::<u64>() {
            Ok(0) | Err(_) => None,
            Ok(n) => Some((len.saturating_sub(n), len)),
        }
    } else {
        match (first.parse::<u64>(), last) {
            (Ok(start), "") => Some((start, len)),
            // A last position past the end means "to the end" (RFC 9110 §14.1.2).
            (Ok(start), last) => {
                last.parse::<u64>().ok().filter(|l| *l >= start).map(|l| (start, l.saturating_add(1).min(len)))
            }
            _ => None,
        }
    };
    match parsed {
        Some((start, end)) if start < len && start < end => ByteRange::Partial(start, end),
        _ => ByteRange::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_basic_passwords() {
        assert_eq!(credentials_token("Bearer hib_abc").as_deref(), Some("hib_abc"));
        assert_eq!(credentials_token("bearer  hib_abc ").as_deref(), Some("hib_abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:hib_abc");
        assert_eq!(credentials_token(&format!("Basic {basic}")).as_deref(), Some("hib_abc"));
        let empty_user = base64::engine::general_purpose::STANDARD.encode(":hib_abc");
        assert_eq!(credentials_token(&format!("Basic {empty_user}")).as_deref(), Some("hib_abc"));
        assert_eq!(credentials_token("Digest x"), None);
        assert_eq!(credentials_token("Basic !!!"), None);
    }

    #[test]
    fn parses_single_byte_ranges() {
        assert_eq!(byte_range(None, 100), ByteRange::Full);
        assert_eq!(byte_range(Some("bytes=0-9"), 100), ByteRange::Partial(0, 10));
        assert_eq!(byte_range(Some("bytes=90-"), 100), ByteRange::Partial(90, 100));
        assert_eq!(byte_range(Some("bytes=90-200"), 100), ByteRange::Partial(90, 100));
        assert_eq!(byte_range(Some("bytes=0-18446744073709551615"), 100), ByteRange::Partial(0, 100));
        assert_eq!(byte_range(Some("bytes=5-18446744073709551614"), 100), ByteRange::Partial(5, 100));
        assert_eq!(byte_range(Some("bytes=-10"), 100), ByteRange::Partial(90, 100));
        assert_eq!(byte_range(Some("bytes=-500"), 100), ByteRange::Partial(0, 100));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), ByteRange::Full);
        assert_eq!(byte_range(Some("items=0-1"), 100), ByteRange::Full);
    }

    #[test]
    fn refuses_unsatisfiable_ranges() {
        for bad in ["bytes=100-", "bytes=200-300", "bytes=5-2", "bytes=-0", "bytes=x-1", "bytes=5"] {
            assert_eq!(byte_range(Some(bad), 100), ByteRange::Unsatisfiable, "{bad}");
        }
    }
}
