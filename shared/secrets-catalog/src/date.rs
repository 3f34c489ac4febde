//! Owns [`Date`]: a calendar day as days since 1970-01-01, parsed from `YYYY-MM-DD`.
//!
//! The crate reads no clock: the caller passes today's date, so rotation checks are
//! deterministic in tests and identical on every platform. The conversion is Howard
//! Hinnant's `days_from_civil` algorithm (proleptic Gregorian calendar), which needs no
//! date library.

use core::fmt;

/// A calendar day (proleptic Gregorian, UTC), stored as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    days: i64,
}

/// Why a text is not a `YYYY-MM-DD` date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateError;

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("is not a date in the form YYYY-MM-DD")
    }
}

impl Date {
    /// The day `days` days after 1970-01-01 (negative: before).
    pub const fn from_days_since_epoch(days: i64) -> Self {
        Self { days }
    }

    /// The day containing the unix timestamp `secs` (UTC); what a caller with a clock port
    /// passes as `today`.
    pub const fn from_unix_seconds(secs: i64) -> Self {
        Self {
            days: secs.div_euclid(86_400),
        }
    }

    /// Days since 1970-01-01.
    pub const fn days_since_epoch(self) -> i64 {
        self.days
    }

    /// Builds a date from year, month (1–12) and day (1–length of that month).
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Self, DateError> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(DateError);
        }
        Ok(Self {
            days: days_from_civil(i64::from(year), i64::from(month), i64::from(day)),
        })
    }

    /// Parses exactly `YYYY-MM-DD` (four-digit year, two-digit month and day, a real
    /// calendar day). Times, time zones and other layouts are refused rather than guessed.
    pub fn parse(text: &str) -> Result<Self, DateError> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(DateError);
        }
        let number = |range: core::ops::Range<usize>| -> Result<u32, DateError> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DateError);
            }
            part.parse().map_err(|_| DateError)
        };
        let year = number(0..4)?;
        let month = number(5..7)?;
        let day = number(8..10)?;
        let year = i32::try_from(year).map_err(|_| DateError)?;
        Self::from_ymd(year, month, day)
    }

    /// Whole days from `earlier` to `self` (negative when `earlier` is later).
    pub const fn days_since(self, earlier: Date) -> i64 {
        self.days - earlier.days
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid civil date (Hinnant, `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] (Hinnant, `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_day_zero_and_known_dates_land_on_their_day_numbers() {
        assert_eq!(Date::parse("1970-01-01").unwrap().days_since_epoch(), 0);
        // 2000-03-01 is 11017 days after the epoch (after the 2000 leap day).
        assert_eq!(
            Date::parse("2000-03-01").unwrap().days_since_epoch(),
            11_017
        );
        assert_eq!(
            Date::from_unix_seconds(1_763_784_000).to_string(),
            "2025-11-22"
        );
    }

    #[test]
    fn parsing_and_printing_round_trip_across_leap_years() {
        for text in [
            "1999-12-31",
            "2000-02-29",
            "2024-02-29",
            "2026-11-22",
            "1969-07-20",
        ] {
            assert_eq!(Date::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn impossible_days_and_other_layouts_are_refused() {
        for text in [
            "2025-02-29",
            "2100-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "2026-01-01T00:00:00Z",
            "+202-01-01",
            "",
        ] {
            assert_eq!(Date::parse(text), Err(DateError), "{text}");
        }
    }

    #[test]
    fn days_since_counts_whole_days_between_dates() {
        let a = Date::parse("2026-01-01").unwrap();
        let b = Date::parse("2026-12-31").unwrap();
        assert_eq!(b.days_since(a), 364);
        assert_eq!(a.days_since(b), -364);
    }
}
