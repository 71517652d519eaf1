//! Parsing and printing of sizes and durations, the way fio users write them.
//!
//! Sizes: a whole number with an optional binary suffix, `k`, `m`, `g`, `t` (also `KiB`, `MB`, ...), all powers of
//! 1024 as in fio's default `kb_base`. Durations: a number with `ns`, `us`, `ms`, `s`, `m` or `h` (bare numbers are
//! seconds, as in fio's `--runtime`).

use std::time::Duration;

/// Parses `2300`, `4k`, `22m`, `22MiB`, `1g` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("'{text}' is not a size (expected e.g. 2300, 4k, 22m, 1g)"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("'{text}' is too large"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("'{text}' has an unknown size suffix (use k, m, g or t)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses `60`, `60s`, `500ms`, `2m` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("'{text}' is not a duration (expected e.g. 60s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ns" => value / 1e9,
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{text}' has an unknown time unit (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("'{text}' is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `23068672` → `22.0 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A latency in nanoseconds as `87 µs`, `1.25 ms`, `2.3 s`, with three significant digits.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    let (value, unit) = if v < 1e3 {
        (v, "ns")
    } else if v < 1e6 {
        (v / 1e3, "µs")
    } else if v < 1e9 {
        (v / 1e6, "ms")
    } else {
        (v / 1e9, "s")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2300"), Ok(2300));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("22m"), Ok(22 << 20));
        assert_eq!(parse_size("22MiB"), Ok(22 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size(" 8 kb "), Ok(8192));
        assert!(parse_size("abc").unwrap_err().contains("not a size"));
        assert!(parse_size("-5").is_err());
        assert!(parse_size("5x").unwrap_err().contains("unknown size suffix"));
        assert!(parse_size("99999999999999999999").unwrap_err().contains("too large"));
        assert!(parse_size("17000000t").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("1e300").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(22 << 20), "22.0 MiB");
        assert_eq!(fmt_ns(950), "950 ns");
        assert_eq!(fmt_ns(87_400), "87.4 µs");
        assert_eq!(fmt_ns(1_250_000), "1.25 ms");
        assert_eq!(fmt_ns(163_000), "163 µs");
    }
}
