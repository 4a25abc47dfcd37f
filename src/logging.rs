//! A small stderr logger for the `log` facade.
//!
//! Logs go to stderr only (journald or the supervisor collects them): tinylet never writes its
//! own log files, so logging costs no flash wear.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

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
        let tag = match record.level() {
            log::Level::Error => 'E',
            log::Level::Warn => 'W',
            log::Level::Info => 'I',
            log::Level::Debug => 'D',
            log::Level::Trace => 'T',
        };
        // One write per line so concurrent lines do not interleave.
        let line = format!(
            "{tag} {}.{:03} {}] {}\n",
            now.as_secs(),
            now.subsec_millis(),
            record.target(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
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
