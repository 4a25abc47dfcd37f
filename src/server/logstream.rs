//! The I/O half of `/containerLogs`: which file (the attempt's `N.log` in the container's log
//! directory, the layout the executor gives the runtime), and streaming it as chunked HTTP,
//! following it while the container runs. Decisions about lines are `logs`'.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smol::future::FutureExt;

use super::conn::TlsConn;
use super::http;
use super::logs::{Decoder, LogOptions, Output, Record, Tail};

/// How often a follower looks for new lines and for the container's end.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Output is sent once this much is buffered (and at every pause while following).
const FLUSH_AT: usize = 32 * 1024;

/// The attempts with a log file in a container's log directory (`N.log`), ascending.
pub fn attempts(dir: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out
}

/// There is no earlier instance of the container to show (`previous` on a first instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoPrevious;

/// The file to read: the current attempt's (or the newest there is), or with `previous` the
/// newest before it. Ok(None): no log yet (an empty answer).
pub fn pick(available: &[u32], current: u32, previous: bool) -> Result<Option<u32>, NoPrevious> {
    let newest = available.iter().copied().filter(|a| *a <= current).max();
    if !previous {
        return Ok(newest.or_else(|| available.last().copied()));
    }
    let cur = newest.unwrap_or(current);
    available
        .iter()
        .copied()
        .filter(|a| *a < cur)
        .max()
        .map(Some)
        .ok_or(NoPrevious)
}

struct Sink<'a> {
    conn: &'a mut TlsConn,
    buf: Vec<u8>,
}

impl Sink<'_> {
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let c = http::chunk(&self.buf);
        self.buf.clear();
        self.conn.write_all(&c).await
    }

    async fn maybe_flush(&mut self) -> std::io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Reads what the file has from `pos`; records completed on the way go to `each`.
fn read_more(
    file: &mut File,
    pos: &mut u64,
    dec: &mut Decoder,
    mut each: impl FnMut(Record),
) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(*pos))?;
    let mut total = 0;
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(total);
        }
        *pos += n as u64;
        total += n;
        for r in dec.feed(block.get(..n).unwrap_or_default()) {
            each(r);
        }
        if total >= 1 << 20 {
            // Let the caller send what it has before reading on.
            return Ok(total);
        }
    }
}

/// Streams the log at `path` (None: nothing yet) as a chunked 200 answer. With `follow`,
/// keeps reading while `running()` says the container instance still runs, then drains the
/// file and ends; a file replaced or truncated under the follower is read from its start.
pub async fn stream(
    conn: &mut TlsConn,
    path: Option<PathBuf>,
    opts: &LogOptions,
    running: impl Fn() -> bool,
) -> std::io::Result<()> {
    conn.write_all(&http::chunked_head(200, "text/plain"))
        .await?;
    let mut out = Output::new(opts);
    let mut sink = Sink {
        conn,
        buf: Vec::new(),
    };
    let Some(path) = path else {
        return sink.conn.write_all(http::LAST_CHUNK).await;
    };
    let mut file = match File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut inode = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| m.ino());
    let mut pos = 0u64;
    let mut dec = Decoder::default();

    // First pass: the whole file (only its last lines with tailLines).
    if let Some(f) = file.as_mut() {
        if let Some(n) = opts.tail_lines {
            let mut tail = Tail::new(n);
            while read_more(f, &mut pos, &mut dec, |r| {
                if out.wanted(&r) {
                    tail.push(r)
                }
            })? > 0
            {}
            for r in tail.into_records() {
                out.render(&r, &mut sink.buf);
                sink.maybe_flush().await?;
            }
        } else {
            loop {
                let mut recs = Vec::new();
                let n = read_more(f, &mut pos, &mut dec, |r| recs.push(r))?;
                for r in &recs {
                    out.render(r, &mut sink.buf);
                }
                sink.maybe_flush().await?;
                if n == 0 || out.done() {
                    break;
                }
            }
        }
    }

    let follow = opts.follow && !opts.previous;
    while follow && !out.done() {
        sink.flush().await?;
        let still = running();
        // Wait a little, or until the client goes away.
        let gone = async {
            let _ = sink.conn.readable().await;
            true
        };
        let tick = async {
            smol::Timer::after(FOLLOW_POLL).await;
            false
        };
        if gone.or(tick).await {
            let mut probe = [0u8; 512];
            if sink.conn.read(&mut probe).await.unwrap_or(0) == 0 {
                return Ok(());
            }
        }
        // A file replaced (new inode) or truncated is read again from its start.
        let meta = std::fs::metadata(&path).ok();
        let replaced = meta.as_ref().map(|m| m.ino()) != inode && meta.is_some();
        let truncated = meta.as_ref().is_some_and(|m| m.len() < pos) && !replaced;
        if replaced || file.is_none() {
            if let Some(f) = file.as_mut() {
                let mut recs = Vec::new();
                read_more(f, &mut pos, &mut dec, |r| recs.push(r))?;
                for r in &recs {
                    out.render(r, &mut sink.buf);
                }
            }
            file = File::open(&path).ok();
            inode = meta.map(|m| m.ino());
            pos = 0;
            dec = Decoder::default();
        } else if truncated {
            pos = 0;
            dec = Decoder::default();
        }
        if let Some(f) = file.as_mut() {
            loop {
                let mut recs = Vec::new();
                let n = read_more(f, &mut pos, &mut dec, |r| recs.push(r))?;
                for r in &recs {
                    out.render(r, &mut sink.buf);
                }
                sink.maybe_flush().await?;
                if n == 0 || out.done() {
                    break;
                }
            }
        }
        if !still {
            // It had ended before this last read: everything it wrote is out.
            break;
        }
    }
    if let Some(r) = dec.finish() {
        out.render(&r, &mut sink.buf);
    }
    sink.flush().await?;
    sink.conn.write_all(http::LAST_CHUNK).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_previous_attempts() {
        assert_eq!(pick(&[0, 1, 2], 2, false), Ok(Some(2)));
        assert_eq!(pick(&[0, 1, 2], 2, true), Ok(Some(1)));
        // The runtime has not created the new attempt's file yet: the newest there is.
        assert_eq!(pick(&[0, 1], 2, false), Ok(Some(1)));
        assert_eq!(pick(&[0, 1], 2, true), Ok(Some(0)));
        assert_eq!(pick(&[0], 0, true), Err(NoPrevious));
        assert_eq!(pick(&[], 0, false), Ok(None));
        assert_eq!(pick(&[], 3, true), Err(NoPrevious));
        // Files of an attempt newer than the view knows (the view lags a relist).
        assert_eq!(pick(&[0, 1], 0, false), Ok(Some(0)));
    }

    #[test]
    fn attempts_lists_numbered_logs_only() {
        let dir = std::env::temp_dir().join(format!("tinylet-attempts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "0.log",
            "10.log",
            "2.log",
            "x.log",
            "1.log.20240101-000000.gz",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        assert_eq!(attempts(&dir), [0, 2, 10]);
        assert!(attempts(&dir.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
