//! Value syntax: parsers from a property's text to a typed value, and the formatter that turns
//! a size back into text for the start-up log.
//!
//! Owns the syntax only (what `256MB`, `7d`, `TRUE` mean); bounds that depend on the key live
//! in `mod.rs`. Invariant: every parser either returns a value or a lowercase reason that says
//! what was expected; none panics or wraps around on overflow. Sizes use powers of 1024 like
//! Spring's `DataSize`, and `format_size` output parses back to the same number.

/// Size units, lower case, with their multipliers (powers of 1024, as Spring's `DataSize`).
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1 << 40),
    ("tb", 1 << 40),
    ("tib", 1 << 40),
];

/// Duration units, lower case, with their length in milliseconds. A plain number is ms.
const DURATION_UNITS: &[(&str, u64)] =
    &[("", 1), ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];

const SIZE_EXPECTED: &str = "expected a size in bytes, optionally with a unit B, KB, MB, GB or TB (powers of 1024)";
const DURATION_EXPECTED: &str = "expected a duration in milliseconds, optionally with a unit ms, s, m, h or d";

/// Parses a port number; 0 asks the OS for a free port.
pub(super) fn port(text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| "expected a port number 0-65535".to_owned())
}

/// Parses a non-negative whole number that fits in a `u32`.
pub(super) fn count(text: &str) -> Result<u32, String> {
    text.parse().map_err(|_| format!("expected a whole number 0-{}", u32::MAX))
}

/// Parses `true` or `false`, in any case.
pub(super) fn boolean(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// Parses a size: plain bytes, or a number with a unit (`K`, `KB`, `KiB`, … `TB`, any case).
pub(super) fn size(text: &str) -> Result<u64, String> {
    with_unit(text, SIZE_UNITS, SIZE_EXPECTED)
}

/// Parses a duration in milliseconds: a plain number, or a number with a unit `ms`/`s`/`m`/`h`/`d`.
pub(super) fn duration_ms(text: &str) -> Result<u64, String> {
    with_unit(text, DURATION_UNITS, DURATION_EXPECTED)
}

/// Splits a comma-separated list; items are trimmed and empty items dropped.
pub(super) fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// Formats a byte count in the largest unit that divides it exactly (`256MB`, `1000`), so the
/// result reads well in the start-up log and parses back with [`size`].
pub(super) fn format_size(bytes: u64) -> String {
    let units = [("TB", 1u64 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];
    units
        .iter()
        .find(|(_, factor)| bytes != 0 && bytes.is_multiple_of(*factor))
        .map_or_else(|| bytes.to_string(), |(unit, factor)| format!("{}{unit}", bytes / factor))
}

/// Parses `<digits><optional spaces><unit>` where the unit is looked up case-insensitively.
fn with_unit(text: &str, units: &[(&str, u64)], expected: &str) -> Result<u64, String> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit = unit.trim_start().to_ascii_lowercase();
    let factor = units.iter().find(|(name, _)| *name == unit).map(|(_, factor)| *factor);
    let (Some(factor), false) = (factor, digits.is_empty()) else {
        return Err(expected.to_owned());
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(factor))
        .ok_or_else(|| format!("{expected}: too large (at most {} in total)", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("1234", Some(1234)),
            ("12B", Some(12)),
            ("1K", Some(1024)),
            ("1kb", Some(1024)),
            ("2KiB", Some(2048)),
            ("64 KB", Some(64 * 1024)),
            ("256MB", Some(256 << 20)),
            ("256mb", Some(256 << 20)),
            ("1M", Some(1 << 20)),
            ("3MiB", Some(3 << 20)),
            ("2GB", Some(2 << 30)),
            ("2g", Some(2 << 30)),
            ("1GiB", Some(1 << 30)),
            ("1TB", Some(1 << 40)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("16777216TB", None),
            ("", None),
            ("MB", None),
            ("abc", None),
            ("-1", None),
            ("+1", None),
            ("1.5GB", None),
            ("12 PB", None),
            ("12XB", None),
            ("1 2", None),
        ];
        for (text, expected) in cases {
            assert_eq!(size(text).ok(), *expected, "size({text:?})");
        }
    }

    #[test]
    fn size_errors_say_what_was_expected() {
        assert!(size("abc").unwrap_err().starts_with("expected a size"));
        assert!(size("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("5000", Some(5000)),
            ("250ms", Some(250)),
            ("5s", Some(5000)),
            ("5S", Some(5000)),
            ("2m", Some(120_000)),
            ("1h", Some(3_600_000)),
            ("7d", Some(7 * 86_400_000)),
            ("7 d", Some(7 * 86_400_000)),
            ("213503982335d", None),
            ("18446744073709551616", None),
            ("", None),
            ("d", None),
            ("1w", None),
            ("1.5s", None),
            ("-5s", None),
            ("PT5S", None),
        ];
        for (text, expected) in cases {
            assert_eq!(duration_ms(text).ok(), *expected, "duration_ms({text:?})");
        }
    }

    #[test]
    fn ports_booleans_and_counts() {
        assert_eq!(port("0"), Ok(0));
        assert_eq!(port("65535"), Ok(65535));
        assert!(port("65536").is_err());
        assert!(port("-1").is_err());
        assert!(port("http").is_err());
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("False"), Ok(false));
        assert!(boolean("yes").is_err());
        assert_eq!(count("4294967295"), Ok(u32::MAX));
        assert!(count("4294967296").is_err());
    }

    #[test]
    fn lists_are_trimmed_and_drop_empty_items() {
        assert_eq!(list(" a, b ,,c ,"), vec!["a", "b", "c"]);
        assert!(list("").is_empty());
        assert!(list(" , ").is_empty());
    }

    #[test]
    fn formatted_sizes_parse_back() {
        for bytes in [0, 1, 1000, 1024, 65_536, 256 << 20, 3 << 30, 1 << 40, u64::MAX] {
            assert_eq!(size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_size(256 << 20), "256MB");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(3 << 10), "3KB");
    }

    proptest::proptest! {
        #[test]
        fn any_size_round_trips_through_format_size(bytes: u64) {
            proptest::prop_assert_eq!(size(&format_size(bytes)), Ok(bytes));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,16}") {
            let _ = (size(&text), duration_ms(&text), port(&text), count(&text), boolean(&text));
        }
    }
}
