//! Human units for sizes ("64MiB") and durations ("30s").
//!
//! Only whole numbers are accepted ("1.5MiB" is rejected; write "1536KiB"):
//! fractions invite rounding surprises, and every value we print back must
//! parse to exactly the same number so `to_toml` round-trips.

use std::fmt;
use std::time::Duration;

/// A number of bytes. Displays in the largest binary unit that divides it
/// exactly ("4KiB", "1536KiB", "100000B"), so printing never loses bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * KIB)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * GIB)
    }

    /// Parses "64MiB", "512KiB", "100kB", "10MB", "123B" or a bare "123".
    /// Whitespace between number and unit is allowed; units are
    /// case-sensitive because "mB" vs "MB" is not a typo we should guess at.
    pub fn parse(s: &str) -> Result<ByteSize, UnitError> {
        let (n, unit) = split_number(s)?;
        let mult = match unit {
            "" | "B" => 1,
            "KiB" => KIB,
            "MiB" => MIB,
            "GiB" => GIB,
            "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return Err(UnitError::Invalid),
        };
        n.checked_mul(mult).map(ByteSize).ok_or(UnitError::TooLarge)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, mult) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n != 0 && n % mult == 0 {
                return write!(f, "{}{}", n / mult, unit);
            }
        }
        write!(f, "{n}B")
    }
}

/// Why a size or duration string was rejected; the caller adds what was
/// expected since that depends on the kind of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitError {
    /// Not `<digits><unit>` with a known unit.
    Invalid,
    /// Well-formed but does not fit in 64 bits.
    TooLarge,
}

/// Splits "  64 MiB " into (64, "MiB"). Only ASCII digits: no sign, no
/// fraction, no exponent.
fn split_number(s: &str) -> Result<(u64, &str), UnitError> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(UnitError::Invalid);
    }
    let n = digits.parse::<u64>().map_err(|_| UnitError::TooLarge)?;
    Ok((n, rest.trim_start()))
}

/// Parses "150ms", "30s", "5m", "2h", "7d" (also "us" and "ns" so that any
/// `Duration` we print parses back exactly). A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let (n, unit) = split_number(s)?;
    let from_secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or(UnitError::TooLarge)
    };
    match unit {
        "ns" => Ok(Duration::from_nanos(n)),
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => from_secs(1),
        "m" => from_secs(60),
        "h" => from_secs(3_600),
        "d" => from_secs(86_400),
        _ => Err(UnitError::Invalid),
    }
}

/// Writes a duration in the largest unit that represents it exactly, the
/// inverse of [`parse_duration`]. Zero prints as "0ms".
pub fn format_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    let secs = d.as_secs();
    if nanos == 0 && secs != 0 {
        for (unit, mult) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs % mult == 0 {
                return format!("{}{}", secs / mult, unit);
            }
        }
        return format!("{secs}s");
    }
    let total = d.as_nanos();
    if total % 1_000_000 == 0 {
        format!("{}ms", total / 1_000_000)
    } else if total % 1_000 == 0 {
        format!("{}us", total / 1_000)
    } else {
        format!("{total}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("512KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("100kB"), Ok(ByteSize(100_000)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse("2GB"), Ok(ByteSize(2_000_000_000)));
        assert_eq!(ByteSize::parse("123B"), Ok(ByteSize(123)));
        assert_eq!(ByteSize::parse("123"), Ok(ByteSize(123)));
        assert_eq!(ByteSize::parse(" 4 KiB "), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("0"), Ok(ByteSize(0)));
    }

    #[test]
    fn sizes_reject() {
        for bad in [
            "", "MiB", "-1", "+1", "1.5MiB", "64MB?", "64mib", "64KB", "1TiB", "1e3", "0x10",
        ] {
            assert_eq!(ByteSize::parse(bad), Err(UnitError::Invalid), "{bad:?}");
        }
        assert_eq!(
            ByteSize::parse("18446744073709551616"),
            Err(UnitError::TooLarge)
        );
        assert_eq!(ByteSize::parse("17179869184GiB"), Err(UnitError::TooLarge));
        assert_eq!(
            ByteSize::parse("18446744073709551615"),
            Ok(ByteSize(u64::MAX))
        );
    }

    #[test]
    fn sizes_display_largest_exact_unit() {
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(1).to_string(), "1B");
        assert_eq!(ByteSize(3 * 512).to_string(), "1536B");
        assert_eq!(ByteSize(4096).to_string(), "4KiB");
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536KiB");
        assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
        assert_eq!(ByteSize(100_000).to_string(), "100000B");
        for n in [0, 1, 1023, 1024, 1 << 40, u64::MAX, 10_000_000] {
            let s = ByteSize(n).to_string();
            assert_eq!(ByteSize::parse(&s), Ok(ByteSize(n)), "{s}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("5us"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("5ns"), Ok(Duration::from_nanos(5)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject() {
        for bad in [
            "", "s", "-1s", "1.5s", "1 sec", "1S", "10x", "1h30m", "1e3ms",
        ] {
            assert_eq!(parse_duration(bad), Err(UnitError::Invalid), "{bad:?}");
        }
        assert_eq!(
            parse_duration("18446744073709551615d"),
            Err(UnitError::TooLarge)
        );
        assert_eq!(
            parse_duration("99999999999999999999ms"),
            Err(UnitError::TooLarge)
        );
    }

    #[test]
    fn durations_format_round_trip() {
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(7),
            Duration::from_millis(1001),
            Duration::from_secs(64_800),
            Duration::new(5, 1),
            Duration::from_secs(u64::MAX),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
    }
}
