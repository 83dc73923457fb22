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

/// The largest time value JavaScript's `Date` holds, in ms either side of the epoch.
const JS_MAX_TIME_MS: i64 = 8_640_000_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// What JavaScript's `Date.parse` answers for `text`, in the forms listed in
/// docs/compatibility.md#4-4-permissions, on a server whose local time zone is UTC (forms
/// without an offset are local time in JavaScript); `None` for anything else, as for `NaN`.
///
/// The forms: ECMAScript's date-time string format (`2026`, `2026-12`, `2026-12-01`, the same
/// with `THH:mm`, `THH:mm:ss` or `THH:mm:ss.sss…` and `Z` or `±HH:mm`, years as `±YYYYYY`);
/// the same date and time separated by a space; and the legacy forms V8 reads, as
/// `toString()` and `toUTCString()` write them and as RFC 2822 has them: an optional weekday,
/// `01 Dec 2026` or `Dec 01[,] 2026` (month names in English, three letters or whole; two-digit
/// years as 20xx below 50, 19xx from 50), an optional `H:mm[:ss[.sss]]` with `AM`/`PM`, an
/// optional zone (`GMT`, `UTC`, `UT`, `Z` followed or not by `±hhmm`, `±hh:mm` or `±hh`; that
/// offset alone; `EST`, `EDT`, `CST`, `CDT`, `MST`, `MDT`, `PST`, `PDT`), and comments in
/// parentheses. As in V8, a day up to 31 past the month's end runs into the next month.
pub fn parse_js_date(text: &str) -> Option<i64> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let ms = parse_es_date(text).or_else(|| parse_legacy_date(text))?;
    (-JS_MAX_TIME_MS..=JS_MAX_TIME_MS)
        .contains(&ms)
        .then_some(ms)
}

/// Days from 1970-01-01 to the first of a month (proleptic Gregorian), then `day - 1` more.
fn epoch_days(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 + i64::from(day) - 1
}

/// A time of day in ms, from hours, minutes, seconds and ms; 24:00 only as the day's end.
fn day_time_ms(hour: u32, minute: u32, second: u32, ms: u32) -> Option<i64> {
    let valid = (hour < 24 || (hour == 24 && minute == 0 && second == 0 && ms == 0))
        && minute < 60
        && second < 60;
    valid.then(|| {
        ((i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second)) * 1000 + i64::from(ms)
    })
}

/// A cursor over ASCII text.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Scan {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    /// Exactly `n` digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.at.checked_add(n)?;
        let digits = self.bytes.get(self.at..end)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at = end;
        Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    }

    /// One or more digits: their value's first three as ms (the rest ignored, as V8 does).
    fn fraction_ms(&mut self) -> Option<u32> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        if digits.is_empty() {
            return None;
        }
        let mut ms = 0;
        for i in 0..3 {
            ms = ms * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
        }
        Some(ms)
    }

    /// `HH:mm[:ss[.sss…]]`, two digits each, as ms into the day.
    fn iso_time(&mut self) -> Option<i64> {
        let hour = self.digits(2)?;
        if !self.eat(b':') {
            return None;
        }
        let minute = self.digits(2)?;
        let (mut second, mut ms) = (0, 0);
        if self.eat(b':') {
            second = self.digits(2)?;
            if self.eat(b'.') {
                ms = self.fraction_ms()?;
            }
        }
        day_time_ms(hour, minute, second, ms)
    }

    /// `Z` or `±HH:mm` as the offset east of UTC in ms.
    fn iso_offset(&mut self) -> Option<i64> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.at += 1;
        let hours = self.digits(2)?;
        if !self.eat(b':') {
            return None;
        }
        let minutes = self.digits(2)?;
        (hours < 24 && minutes < 60).then(|| sign * i64::from(hours * 60 + minutes) * 60_000)
    }
}

/// ECMAScript's date-time string format, or its date and time separated by one space.
fn parse_es_date(text: &str) -> Option<i64> {
    let mut s = Scan::new(text);
    let year = match s.peek()? {
        sign @ (b'+' | b'-') => {
            s.at += 1;
            let y = i64::from(s.digits(6)?);
            if sign == b'-' && y == 0 {
                return None;
            }
            if sign == b'-' { -y } else { y }
        }
        _ => i64::from(s.digits(4)?),
    };
    let (mut month, mut day, mut whole_date) = (1, 1, false);
    if s.eat(b'-') {
        month = s.digits(2)?;
        if s.eat(b'-') {
            day = s.digits(2)?;
            whole_date = true;
        }
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = epoch_days(year, month, day);
    if s.done() {
        // A date alone is UTC.
        return Some(days * DAY_MS);
    }
    // A space instead of `T` only after a whole `YYYY-MM-DD`.
    if !(s.eat(b'T') || (whole_date && s.eat(b' '))) {
        return None;
    }
    let time = s.iso_time()?;
    // A date-time without an offset is local time, here UTC.
    let offset = if s.done() { 0 } else { s.iso_offset()? };
    s.done().then(|| days * DAY_MS + time - offset)
}

/// A token of the legacy forms.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// A number and how many digits it was written with.
    Number(u32, usize),
    Symbol(u8),
}

/// Words (lower-cased), numbers and symbols; white space separates, text in parentheses is a
/// comment.
fn legacy_tokens(text: &str) -> Option<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'(' {
            let mut depth = 0;
            while let Some(&c) = bytes.get(i) {
                depth += i32::from(c == b'(') - i32::from(c == b')');
                i += 1;
                if depth == 0 {
                    break;
                }
            }
        } else if b.is_ascii_alphabetic() {
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
                i += 1;
            }
            tokens.push(Token::Word(text[start..i].to_ascii_lowercase()));
        } else if b.is_ascii_digit() {
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i - start > 9 {
                return None;
            }
            tokens.push(Token::Number(text[start..i].parse().ok()?, i - start));
        } else if matches!(b, b':' | b'.' | b',' | b'+' | b'-') {
            tokens.push(Token::Symbol(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(tokens)
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// An English name, whole or its first three letters: its place in `names`, from 1.
fn named(word: &str, names: &[&str]) -> Option<u32> {
    let place = names
        .iter()
        .position(|name| word == *name || (word.len() == 3 && name.starts_with(word)))?;
    u32::try_from(place + 1).ok()
}

/// The legacy forms (see [`parse_js_date`]).
fn parse_legacy_date(text: &str) -> Option<i64> {
    let tokens = legacy_tokens(text)?;
    let mut t = tokens.iter().peekable();
    let next_is = |t: &mut std::iter::Peekable<std::slice::Iter<'_, Token>>, symbol: u8| {
        t.next_if(|tok| **tok == Token::Symbol(symbol)).is_some()
    };
    if let Some(Token::Word(w)) = t.peek()
        && named(w, &WEEKDAYS).is_some()
    {
        t.next();
        next_is(&mut t, b',');
    }
    // `01 Dec 2026` or `Dec 01[,] 2026`.
    let (month, day) = match (t.next()?, t.next()?) {
        (Token::Word(w), Token::Number(day, 1..=2)) => (named(w, &MONTHS)?, *day),
        (Token::Number(day, 1..=2), Token::Word(w)) => (named(w, &MONTHS)?, *day),
        _ => return None,
    };
    next_is(&mut t, b',');
    let year = match t.next()? {
        Token::Number(y, 2 | 4) => match *y {
            y @ 0..=49 => y + 2000,
            y @ 50..=99 => y + 1900,
            y => y,
        },
        _ => return None,
    };
    if !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = epoch_days(i64::from(year), month, day) * DAY_MS;
    // `H:mm[:ss[.sss]]`, then `AM` or `PM`.
    if let Some(Token::Number(hour, 1..=2)) = t.peek() {
        t.next();
        let mut hour = *hour;
        if !next_is(&mut t, b':') {
            return None;
        }
        let Some(Token::Number(minute, 2)) = t.next() else {
            return None;
        };
        let (mut second, mut millis) = (0, 0);
        if next_is(&mut t, b':') {
            let Some(Token::Number(s, 2)) = t.next() else {
                return None;
            };
            second = *s;
            if next_is(&mut t, b'.') {
                let Some(Token::Number(f, len)) = t.next() else {
                    return None;
                };
                let scaled = match len {
                    1 => f * 100,
                    2 => f * 10,
                    3 => *f,
                    _ => return None,
                };
                millis = scaled;
            }
        }
        if let Some(Token::Word(w)) = t.peek()
            && (w == "am" || w == "pm")
        {
            if hour > 12 {
                return None;
            }
            hour = hour % 12 + if w == "pm" { 12 } else { 0 };
            t.next();
        }
        ms += day_time_ms(hour, *minute, second, millis)?;
    }
    // The zone; none is local time, here UTC.
    let mut offset_minutes: i64 = 0;
    if let Some(Token::Word(w)) = t.peek() {
        offset_minutes = match w.as_str() {
            "gmt" | "utc" | "ut" | "z" => 0,
            "edt" => -4 * 60,
            "est" | "cdt" => -5 * 60,
            "cst" | "mdt" => -6 * 60,
            "mst" | "pdt" => -7 * 60,
            "pst" => -8 * 60,
            _ => return None,
        };
        t.next();
    }
    if let Some(Token::Symbol(sign @ (b'+' | b'-'))) = t.peek() {
        let sign = if *sign == b'+' { 1 } else { -1 };
        t.next();
        let (hours, minutes) = match t.next()? {
            Token::Number(n, 4) => (n / 100, n % 100),
            Token::Number(h, 1..=2) => {
                if next_is(&mut t, b':') {
                    let Some(Token::Number(m, 2)) = t.next() else {
                        return None;
                    };
                    (*h, *m)
                } else {
                    (*h, 0)
                }
            }
            _ => return None,
        };
        if hours > 23 || minutes > 59 {
            return None;
        }
        offset_minutes += sign * i64::from(hours * 60 + minutes);
    }
    t.next().is_none().then(|| ms - offset_minutes * 60_000)
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

    #[test]
    fn reads_what_date_parse_reads() {
        let noon = 1_796_119_200_000; // 2026-12-01T10:00:00.000Z
        for text in [
            "2026-12-01T10:00:00.000Z",
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00Z",
            "2026-12-01T10:00:00",
            "2026-12-01T11:00:00.000+01:00",
            "2026-12-01T05:30:00-04:30",
            "+002026-12-01T10:00:00Z",
            "2026-12-01 10:00:00",
            "2026-12-01 10:00:00.000Z",
            "Tue, 01 Dec 2026 10:00:00 GMT",
            "Tue Dec 01 2026 10:00:00 GMT+0000 (Coordinated Universal Time)",
            "Tue Dec 01 2026 11:00:00 GMT+0100 (Central European Standard Time)",
            "1 Dec 2026 11:00:00 +0100",
            "Tuesday, December 1, 2026 10:00:00",
            "Dec 1, 2026 10:00 AM",
            "December 01 2026 5:00:00 EST",
            "01 Dec 26 10:00:00 UTC",
            "  2026-12-01T10:00:00Z ",
        ] {
            assert_eq!(parse_js_date(text), Some(noon), "{text}");
        }
        let midnight = noon - 10 * 3_600_000;
        for text in [
            "2026-12-01",
            "Dec 1, 2026",
            "1 December 2026",
            "Tue, 01 Dec 2026",
        ] {
            assert_eq!(parse_js_date(text), Some(midnight), "{text}");
        }
        assert_eq!(parse_js_date("2026"), parse_js_date("2026-01-01T00:00:00Z"));
        assert_eq!(parse_js_date("2026-12"), parse_js_date("2026-12-01"));
        assert_eq!(parse_js_date("1970-01-01T00:00:00.001Z"), Some(1));
        assert_eq!(parse_js_date("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(
            parse_js_date("2021-10-27T11:26:24.4301Z"),
            Some(1_635_333_984_430)
        );
        assert_eq!(
            parse_js_date("2026-12-01T24:00:00Z"),
            parse_js_date("2026-12-02")
        );
        assert_eq!(parse_js_date("Dec 1 2026 12:00 AM"), Some(midnight));
        assert_eq!(
            parse_js_date("Dec 1 2026 12:30 PM"),
            Some(midnight + 45_000_000)
        );
        // V8 runs a day past the month's end into the next month.
        assert_eq!(parse_js_date("2021-02-30"), parse_js_date("2021-03-02"));
        assert_eq!(parse_js_date("Feb 31 2021"), parse_js_date("2021-03-03"));
        assert_eq!(
            parse_js_date("+275760-09-13T00:00:00.000Z"),
            Some(8_640_000_000_000_000)
        );
        assert_eq!(
            parse_js_date("-271821-04-20T00:00:00.000Z"),
            Some(-8_640_000_000_000_000)
        );
    }

    #[test]
    fn refuses_what_date_parse_refuses() {
        for text in [
            "",
            "yesterday",
            "garbage",
            "2026-13-01",
            "2026-12-32",
            "2026-00-10",
            "2026-12-01T25:00:00Z",
            "2026-12-01T24:00:01Z",
            "2026-12-01T10:60:00Z",
            "2026-12-01T10:00:60Z",
            "2026-12-01T10:00:00+24:00",
            "2026-12-01T10:00:00.Z",
            "2026-12-01T",
            "-000000-01-01T00:00:00Z",
            "+275760-09-13T00:00:00.001Z",
            "99999-99-99T99:99:99.999Z",
            "Dec 32 2026",
            "Foo 1 2026",
            "Dec 1 2026 13:00 PM",
            "Dec 1 2026 10:00 XYZ",
            "Dec 1 2026 10:00 +2500",
        ] {
            assert_eq!(parse_js_date(text), None, "{text:?}");
        }
    }
}
