//! A small stderr logger for the `log` facade, in the kubelet's (klog's) line format.
//!
//! Logs go to stderr only (journald or the supervisor collects them): tinylet never writes its
//! own log files, so logging costs no flash wear.
//!
//! Each event is one line: `Lmmdd hh:mm:ss.uuuuuu PID target] message`, where `L` is the
//! level (E error, W warning, I info, D debug, T trace), the time is UTC with microseconds,
//! PID is the process id and target the module that logged, e.g.
//! `I1206 20:26:31.123456    4711 tinylet::agent::kubelet] node pi4: 2 static pod(s) ...`.
//! klog puts a thread id and `file:line` where tinylet puts its pid and module; the year is
//! left out as klog leaves it. Line breaks inside a message are written as `\n` so that one
//! event stays one line.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

static LEVEL: AtomicU8 = AtomicU8::new(2);

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        level_rank(metadata.level()) <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = header(record.level(), now, std::process::id(), record.target());
        let message = record.args().to_string();
        line.push_str(&message.replace('\n', "\\n"));
        line.push('\n');
        // One write per line so concurrent lines do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The line header up to and including `] `, for a time since the Unix epoch.
pub fn header(level: log::Level, since_epoch: Duration, pid: u32, target: &str) -> String {
    let tag = match level {
        log::Level::Error => 'E',
        log::Level::Warn => 'W',
        log::Level::Info => 'I',
        log::Level::Debug => 'D',
        log::Level::Trace => 'T',
    };
    let secs = since_epoch.as_secs();
    let (_, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{tag}{month:02}{day:02} {:02}:{:02}:{:02}.{:06} {pid:>7} {target}] ",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so that the leap day ends each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

fn level_rank(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 0,
        log::Level::Warn => 1,
        log::Level::Info => 2,
        log::Level::Debug => 3,
        log::Level::Trace => 4,
    }
}

/// Installs the logger. `verbosity` follows the kubelet's `-v`: 0-1 info, 2-3 debug, 4+ trace.
pub fn init(verbosity: u8) {
    let rank = match verbosity {
        0 | 1 => 2,
        2 | 3 => 3,
        _ => 4,
    };
    LEVEL.store(rank, Ordering::Relaxed);
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_klog_style_in_utc() {
        // 2026-12-06 20:26:31.123456 UTC.
        let t = Duration::new(1_796_588_791, 123_456_789);
        assert_eq!(
            header(log::Level::Info, t, 4711, "tinylet::agent"),
            "I1206 20:26:31.123456    4711 tinylet::agent] "
        );
        assert_eq!(
            header(log::Level::Error, Duration::ZERO, 1, "x"),
            "E0101 00:00:00.000000       1 x] "
        );
    }

    #[test]
    fn civil_dates_across_leap_years_and_centuries() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        // 2000 is a leap year (divisible by 400), 2100 is not.
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(11_017), (2000, 3, 1));
        assert_eq!(civil_date(47_540), (2100, 2, 28));
        assert_eq!(civil_date(47_541), (2100, 3, 1));
        assert_eq!(civil_date(20_793), (2026, 12, 6));
        assert_eq!(civil_date(20_818), (2026, 12, 31));
    }
}
