//! Calendar dates in China Standard Time (Asia/Shanghai). Timestamps are stored in UTC; every
//! date the policies talk about (settlement date, statement year) is the Asia/Shanghai
//! calendar date of that instant (DOMAIN.md "Money and dates").

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;

/// The Asia/Shanghai calendar date of an instant.
pub fn shanghai_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Shanghai).date_naive()
}

/// The Asia/Shanghai calendar year of an instant.
pub fn shanghai_year(at: DateTime<Utc>) -> i32 {
    shanghai_date(at).year()
}

/// 00:00 Asia/Shanghai on `date`, as a UTC instant.
pub fn start_of_shanghai_day(date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    Shanghai
        .from_local_datetime(&midnight)
        .earliest()
        .expect("Asia/Shanghai has no gap at midnight")
        .with_timezone(&Utc)
}

/// Truncates to whole microseconds, the precision both databases keep, so that a timestamp
/// hashed before it is written equals the one read back.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("in range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shanghai_year_turns_at_midnight_utc_plus_8() {
        let last_minute_2024 = DateTime::parse_from_rfc3339("2024-12-31T23:59:00+08:00").unwrap().to_utc();
        let first_minute_2025 = DateTime::parse_from_rfc3339("2025-01-01T00:00:00+08:00").unwrap().to_utc();
        assert_eq!(shanghai_year(last_minute_2024), 2024);
        assert_eq!(shanghai_year(first_minute_2025), 2025);
        // The same instant is still 2024 in UTC: the year is not taken from UTC.
        assert_eq!(first_minute_2025.year(), 2024);
        assert_eq!(start_of_shanghai_day(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()), first_minute_2025);
    }
}
