//! Human units in config: durations (`500ms`, `30s`, `1h30m`, `1.5h`) and
//! sizes (`1024`, `64KiB`, `1.5MiB`).
//!
//! Durations: one or more `<number><unit>` parts written without spaces,
//! units `d`, `h`, `m`, `s`, `ms`, each at most once and largest first; only
//! the last part may have decimals. Sizes: a number, optionally followed by
//! `B`, `KB`/`kB`, `KiB`, `MB`, `MiB`, `GB` or `GiB`; decimals need a unit
//! larger than a byte. Both round to the nearest millisecond or byte.

use std::time::Duration;

const DURATION_EXAMPLES: &str = "500ms, 30s, 10m, 1h30m, 1.5h";
const SIZE_EXAMPLES: &str = "1024, 64KiB, 10MB, 1.5MiB";

/// Milliseconds per duration unit, largest first: the order parts must follow.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Bytes per size unit.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("kB", 1_000),
    ("KiB", 1 << 10),
    ("MB", 1_000_000),
    ("MiB", 1 << 20),
    ("GB", 1_000_000_000),
    ("GiB", 1 << 30),
];

/// More decimal places than this say nothing a millisecond or byte can hold.
const MAX_DECIMALS: usize = 9;

/// A non-negative decimal number as written: `12` or `1.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal<'t> {
    whole: &'t str,
    fraction: &'t str,
}

/// Parses a duration such as `500ms`, `30s`, `1h30m` or `1.5h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || format!("{text:?} is not a duration (expected e.g. {DURATION_EXAMPLES})");
    if text.starts_with('-') {
        return Err(format!("{text:?} must not be negative"));
    }
    if text.is_empty() || text.contains(char::is_whitespace) {
        return Err(expected());
    }
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u128 = 0;
    let mut any_nonzero = false;
    while !rest.is_empty() {
        let (number, after) = split_number(rest).ok_or_else(expected)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(if rest.len() == text.len() {
                format!("{text:?} has no unit (write e.g. {text}s)")
            } else {
                format!("{text:?} has a number without a unit (expected e.g. {DURATION_EXAMPLES})")
            });
        }
        let Some(index) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (use ms, s, m, h or d, e.g. {DURATION_EXAMPLES})"
            ));
        };
        if index < next_unit {
            return Err(format!(
                "{text:?}: write each unit once, largest first (e.g. 1h30m, 1m30s)"
            ));
        }
        if !number.fraction.is_empty() && !after.is_empty() {
            return Err(format!(
                "{text:?}: only the last part may have decimals (e.g. 1h30m or 1.5h)"
            ));
        }
        let millis = scale(number, DURATION_UNITS[index].1).ok_or_else(|| too_many_decimals(text))?;
        any_nonzero |= !number.is_zero();
        total = total
            .checked_add(millis)
            .ok_or_else(|| format!("{text:?} is too long"))?;
        next_unit = index + 1;
        rest = after;
    }
    if any_nonzero && total == 0 {
        return Err(format!("{text:?} is shorter than 1ms"));
    }
    u64::try_from(total)
        .map(Duration::from_millis)
        .map_err(|_| format!("{text:?} is too long"))
}

/// Parses a byte count: `1024`, `64KiB`, `10 MB`, `1.5MiB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let expected = || format!("{text:?} is not a size (expected e.g. {SIZE_EXAMPLES})");
    if text.starts_with('-') {
        return Err(format!("{text:?} must not be negative"));
    }
    let (number, unit) = split_number(text).ok_or_else(expected)?;
    let unit = unit.trim_start();
    let factor = match unit {
        "" => 1,
        _ => SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                format!(
                    "{unit:?} is not a size unit (use B, KB, KiB, MB, MiB, GB or GiB, e.g. {SIZE_EXAMPLES})"
                )
            })?,
    };
    if factor == 1 && !number.fraction.is_empty() {
        return Err(format!(
            "{text:?}: a byte count is whole; decimals need a unit such as KiB or MiB"
        ));
    }
    let bytes = scale(number, factor).ok_or_else(|| too_many_decimals(text))?;
    if !number.is_zero() && bytes == 0 {
        return Err(format!("{text:?} is less than one byte"));
    }
    u64::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
}

/// Writes a duration the way the config accepts it: `1h30m`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in DURATION_UNITS {
        if ms >= *size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

fn too_many_decimals(text: &str) -> String {
    format!("{text:?} has more than {MAX_DECIMALS} decimal places")
}

/// Splits a leading `digits[.digits]` off `text`.
fn split_number(text: &str) -> Option<(Decimal<'_>, &str)> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let whole_len = digits(text);
    if whole_len == 0 {
        return None;
    }
    let (whole, rest) = text.split_at(whole_len);
    let Some(after_dot) = rest.strip_prefix('.') else {
        return Some((Decimal { whole, fraction: "" }, rest));
    };
    let fraction_len = digits(after_dot);
    if fraction_len == 0 {
        return None;
    }
    let (fraction, rest) = after_dot.split_at(fraction_len);
    Some((Decimal { whole, fraction }, rest))
}

// === impl Decimal ===

impl Decimal<'_> {
    fn is_zero(&self) -> bool {
        self.whole.bytes().chain(self.fraction.bytes()).all(|b| b == b'0')
    }
}

/// `number × factor`, rounded to the nearest whole unit (halves up).
/// `None` when the fraction is too long; a whole part too large to count
/// saturates, so the caller reports it as too long or too large.
fn scale(number: Decimal<'_>, factor: u128) -> Option<u128> {
    if number.fraction.len() > MAX_DECIMALS {
        return None;
    }
    let whole = number.whole.parse::<u128>().unwrap_or(u128::MAX);
    let scaled = whole.saturating_mul(factor);
    if number.fraction.is_empty() {
        return Some(scaled);
    }
    // Fewer than 10 digits, so this parse cannot fail.
    let fraction = number.fraction.parse::<u128>().ok()?;
    let denominator = 10u128.pow(u32::try_from(number.fraction.len()).ok()?);
    let part = (fraction * factor + denominator / 2) / denominator;
    Some(scaled.saturating_add(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u128 {
        parse_duration(text).unwrap().as_millis()
    }

    #[test]
    fn single_durations_need_a_known_unit() {
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("12h"), 12 * 3_600_000);
        assert_eq!(ms("1d"), 86_400_000);
        assert_eq!(ms("0s"), 0);
        assert!(parse_duration("30")
            .unwrap_err()
            .contains("no unit (write e.g. 30s)"));
        assert!(parse_duration("30x").unwrap_err().contains("unknown unit \"x\""));
        assert!(parse_duration("30µs").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn compound_durations_go_largest_unit_first() {
        assert_eq!(ms("1h30m"), 90 * 60_000);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("2d12h"), 60 * 3_600_000);
        assert_eq!(ms("1s500ms"), 1_500);
        assert_eq!(ms("1h0m5s"), 3_605_000);
        for wrong in ["30s1m", "1m1m", "1ms1s"] {
            let e = parse_duration(wrong).unwrap_err();
            assert!(e.contains("largest first"), "{wrong}: {e}");
        }
        assert!(parse_duration("1h30").unwrap_err().contains("without a unit"));
        assert!(parse_duration("1h 30m").unwrap_err().contains("expected e.g."));
    }

    #[test]
    fn decimal_durations_round_to_the_millisecond() {
        assert_eq!(ms("1.5h"), 90 * 60_000);
        assert_eq!(ms("0.5s"), 500);
        assert_eq!(ms("1m30.5s"), 90_500);
        assert_eq!(ms("0.0015s"), 2, "half a millisecond rounds up");
        assert_eq!(ms("0.0014s"), 1);
        assert!(parse_duration("0.0001s")
            .unwrap_err()
            .contains("shorter than 1ms"));
        assert!(parse_duration("1.5h30m")
            .unwrap_err()
            .contains("only the last part"));
        assert!(parse_duration("0.1234567891s")
            .unwrap_err()
            .contains("decimal places"));
        for wrong in [".5s", "1.s", "1..5s", "1.5.5s"] {
            assert!(parse_duration(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn empty_negative_and_overflowing_durations_are_refused() {
        assert!(parse_duration("")
            .unwrap_err()
            .contains("expected e.g. 500ms, 30s, 10m, 1h30m"));
        assert!(parse_duration("-1s")
            .unwrap_err()
            .contains("must not be negative"));
        assert!(parse_duration("99999999999999999999d")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration("213503982335d").unwrap_err().contains("too long"));
        assert!(parse_duration("213503982334d").is_ok());
    }

    #[test]
    fn durations_are_written_back_in_the_same_grammar() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(5_400_250), "1h30m250ms"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d);
        }
    }

    #[test]
    fn sizes_accept_decimal_and_binary_units_and_decimals() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("16KiB").unwrap(), 16 * 1024);
        assert_eq!(parse_bytes("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_bytes("10 MiB").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(parse_bytes("0.5KB").unwrap(), 500);
        assert_eq!(parse_bytes("1.0001KiB").unwrap(), 1024, "rounded to the byte");
        assert_eq!(parse_bytes("0").unwrap(), 0);
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        assert!(parse_bytes("10 parsecs")
            .unwrap_err()
            .contains("not a size unit (use B, KB, KiB, MB, MiB, GB or GiB"));
        assert!(parse_bytes("lots")
            .unwrap_err()
            .contains("expected e.g. 1024, 64KiB, 10MB, 1.5MiB"));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes(".5MiB").is_err());
        assert!(parse_bytes("-1MiB").unwrap_err().contains("must not be negative"));
        assert!(parse_bytes("1.5").unwrap_err().contains("a byte count is whole"));
        assert!(parse_bytes("1.5B").unwrap_err().contains("a byte count is whole"));
        assert!(parse_bytes("0.0001KB")
            .unwrap_err()
            .contains("less than one byte"));
        assert!(parse_bytes("99999999999GiB").unwrap_err().contains("too large"));
        assert!(parse_bytes("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
    }
}
