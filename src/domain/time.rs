//! Times are stored as integer epoch milliseconds and shown as Rocket.Chat shows dates:
//! ISO-8601 in UTC with milliseconds and `Z` (`2021-10-27T11:26:24.430Z`).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2021-10-27T11:26:24.430Z` for the given epoch milliseconds; `None` outside years 0..=9999.
pub fn format_iso_ms(ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

/// Parses an RFC 3339 date-time (any offset, any fraction) to epoch milliseconds.
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .ok()?
        .to_offset(UtcOffset::UTC);
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    // Only dates that can be shown again in the same form.
    format_iso_ms(ms).map(|_| ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rocketchat_dates() {
        let ms = parse_iso_ms("2021-10-27T11:26:24.430Z").unwrap();
        assert_eq!(ms, 1_635_333_984_430);
        assert_eq!(format_iso_ms(ms).unwrap(), "2021-10-27T11:26:24.430Z");
    }

    #[test]
    fn normalises_offsets_and_precision() {
        let ms = parse_iso_ms("2021-10-27T13:26:24.4301+02:00").unwrap();
        assert_eq!(format_iso_ms(ms).unwrap(), "2021-10-27T11:26:24.430Z");
        assert_eq!(format_iso_ms(0).unwrap(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn rejects_non_dates() {
        assert_eq!(parse_iso_ms("yesterday"), None);
        assert_eq!(parse_iso_ms("2021-10-27"), None);
        assert_eq!(format_iso_ms(i64::MAX), None);
    }
}
