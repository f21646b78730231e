//! Human-readable numbers shared by the CLI and the dashboard.

/// "1 path", "2 paths": `n` and the noun that fits it.
pub fn count(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Bytes in binary units (B, KiB, MiB, GiB, TiB) with one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A limit in the largest binary unit that divides it ("16 GiB", "512 KiB", "1000 bytes"):
/// exact, as limits are set.
pub fn exact_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Quotas are shown in GiB, so sizes and limits compare at a glance; amounts too small for
/// that (under 0.01 GiB) in the unit that shows them.
pub fn gib(bytes: u64) -> String {
    let value = bytes as f64 / GIB;
    if bytes > 0 && value < 0.01 {
        return human_bytes(bytes);
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} GiB")
}

/// A quota as a number of GiB for a form field: exact enough to submit again unchanged.
pub fn gib_number(bytes: u64) -> String {
    let text = format!("{:.9}", bytes as f64 / GIB);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A lifetime such as `90d`, `12h`, `30m`, `45s` or `45` (seconds), in seconds.
pub fn parse_lifetime_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = digits.parse().ok()?;
    let unit_seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return None,
    };
    n.checked_mul(unit_seconds)
}

pub const LIFETIME_RULE: &str = "use e.g. 90d, 12h, 30m, 45s";

/// Parses a GiB amount such as `50` or `0.5` into bytes.
pub fn parse_gib(text: &str) -> Option<u64> {
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value > 0.0 && value < 1e9).then(|| (value * GIB).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn quotas_are_in_gib() {
        assert_eq!(gib(10 * 1024 * 1024 * 1024), "10 GiB");
        assert_eq!(gib(512 * 1024 * 1024), "0.5 GiB");
        assert_eq!(gib(0), "0 GiB");
        assert_eq!(gib(1000), "1000 B");
        assert_eq!(gib(27 * 1024), "27.0 KiB");
        assert_eq!(parse_gib("0.5"), Some(512 * 1024 * 1024));
        assert_eq!(parse_gib(" 2 "), Some(2 * 1024 * 1024 * 1024));
        for bad in ["", "-1", "0", "lots", "inf", "NaN"] {
            assert_eq!(parse_gib(bad), None, "{bad}");
        }
    }
}
