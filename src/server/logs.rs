//! Container logs as the kubelet serves them, sans-I/O: the `/containerLogs` query options,
//! the CRI log line format (`TIMESTAMP STREAM P|F MESSAGE`) with partial lines joined, and the
//! output rules (since, timestamps, tail, byte limit). Files and sockets are `logstream`'s.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::path::Target;
use crate::k8s::coordination::parse_time;

/// A joined line longer than this is emitted as it stands (a writer that never ends a line
/// must not grow the agent's memory without bound).
pub const MAX_LINE: usize = 1 << 20;

/// The `/containerLogs` query (core/v1 PodLogOptions as the API server forwards it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Only lines at or after this time (`sinceSeconds` or `sinceTime`).
    pub since: Option<SystemTime>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

/// Go's `strconv.ParseBool`, which the kubelet's query decoder uses.
fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{name}: {v:?} is not a boolean")),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .map_err(|_| format!("{name}: {v:?} is not a 64-bit integer"))
}

impl LogOptions {
    /// Reads the options; the upstream validation rules apply (tailLines ≥ 0, limitBytes ≥ 1,
    /// sinceSeconds ≥ 1, not both sinceSeconds and sinceTime). An error maps to 422.
    pub fn from_query(t: &Target, now: SystemTime) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        if let Some(v) = t.param("follow") {
            o.follow = parse_bool("follow", v)?;
        }
        if let Some(v) = t.param("previous") {
            o.previous = parse_bool("previous", v)?;
        }
        if let Some(v) = t.param("timestamps") {
            o.timestamps = parse_bool("timestamps", v)?;
        }
        if let Some(v) = t.param("tailLines") {
            let n = parse_int("tailLines", v)?;
            o.tail_lines = Some(u64::try_from(n).map_err(|_| "tailLines: must be >= 0")?);
        }
        if let Some(v) = t.param("limitBytes") {
            let n = parse_int("limitBytes", v)?;
            if n < 1 {
                return Err("limitBytes: must be >= 1".into());
            }
            o.limit_bytes = u64::try_from(n).ok();
        }
        let since_seconds = t.param("sinceSeconds");
        let since_time = t.param("sinceTime");
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        if let Some(v) = since_seconds {
            let n = parse_int("sinceSeconds", v)?;
            if n < 1 {
                return Err("sinceSeconds: must be >= 1".into());
            }
            let back = Duration::from_secs(n.unsigned_abs());
            let since = now
                .checked_sub(back)
                .filter(|t| *t >= SystemTime::UNIX_EPOCH)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            o.since = Some(since);
        }
        if let Some(v) = since_time {
            o.since =
                Some(parse_time(v).ok_or_else(|| format!("sinceTime: {v:?} is not RFC 3339"))?);
        }
        Ok(o)
    }
}

/// One logical log line: partial fragments joined, newline included (unless cut at
/// [`MAX_LINE`] or at the end of a file that ends mid-line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The first fragment's timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: String,
    /// Its parsed value (None if unparsable: such a line passes any `since`).
    pub time: Option<SystemTime>,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub content: Vec<u8>,
}

/// Splits CRI log bytes into [`Record`]s; bytes may arrive in any chunking.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of a file line not yet ended by `\n`.
    pending: Vec<u8>,
    /// A logical line being joined from `P` fragments.
    joining: Option<Record>,
    /// Lines that did not match the format, skipped.
    pub malformed: u64,
}

impl Decoder {
    /// Feeds bytes; returns the logical lines they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(nl);
            bytes = rest.get(1..).unwrap_or(&[]);
            if self.pending.is_empty() {
                self.line(line, &mut out);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.line(&whole, &mut out);
            }
        }
        if self.pending.len() + bytes.len() > MAX_LINE + 128 {
            // A file line this long is not CRI format (the runtime splits at 16 KiB).
            self.pending.clear();
            self.malformed += 1;
        } else {
            self.pending.extend_from_slice(bytes);
        }
        out
    }

    /// At the end of a read (not following): a fragment still being joined is emitted.
    pub fn finish(&mut self) -> Option<Record> {
        self.pending.clear();
        self.joining.take()
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Record>) {
        let mut parts = line.splitn(4, |&b| b == b' ');
        let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            self.malformed += 1;
            return;
        };
        let msg = parts.next().unwrap_or(&[]);
        let full = match tag.split(|&b| b == b':').next() {
            Some(b"F") => true,
            Some(b"P") => false,
            _ => {
                self.malformed += 1;
                return;
            }
        };
        let (Ok(ts), Ok(stream)) = (std::str::from_utf8(ts), std::str::from_utf8(stream)) else {
            self.malformed += 1;
            return;
        };
        let rec = self.joining.get_or_insert_with(|| Record {
            timestamp: ts.to_string(),
            time: parse_time(ts),
            stream: stream.to_string(),
            content: Vec::new(),
        });
        rec.content.extend_from_slice(msg);
        if full {
            rec.content.push(b'\n');
        }
        if full || rec.content.len() >= MAX_LINE {
            if let Some(r) = self.joining.take() {
                out.push(r);
            }
        }
    }
}

/// Output rules applied to records in order: `since`, `timestamps`, `limitBytes`.
#[derive(Debug, Clone)]
pub struct Output {
    since: Option<SystemTime>,
    timestamps: bool,
    /// Bytes still allowed (None: no limit).
    left: Option<u64>,
}

impl Output {
    /// From the request's options.
    pub fn new(o: &LogOptions) -> Output {
        Output {
            since: o.since,
            timestamps: o.timestamps,
            left: o.limit_bytes,
        }
    }

    /// Whether the record passes `since` (timestamps are kept as the runtime wrote them).
    pub fn wanted(&self, r: &Record) -> bool {
        match (self.since, r.time) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        }
    }

    /// Appends the record's bytes to `buf` (nothing if filtered out or the limit is used up).
    pub fn render(&mut self, r: &Record, buf: &mut Vec<u8>) {
        if !self.wanted(r) || self.done() {
            return;
        }
        let start = buf.len();
        if self.timestamps {
            buf.extend_from_slice(r.timestamp.as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(&r.content);
        if let Some(left) = self.left.as_mut() {
            let written = (buf.len() - start) as u64;
            if written > *left {
                buf.truncate(start + usize::try_from(*left).unwrap_or(usize::MAX));
                *left = 0;
            } else {
                *left -= written;
            }
        }
    }

    /// The byte limit is used up: nothing more will be written.
    pub fn done(&self) -> bool {
        self.left == Some(0)
    }
}

/// Keeps the last `n` wanted records of a pass over a file (`tailLines`).
#[derive(Debug)]
pub struct Tail {
    n: usize,
    kept: VecDeque<Record>,
}

impl Tail {
    /// Keeps up to `n` records (capped at what memory allows: a huge `tailLines` means all).
    pub fn new(n: u64) -> Tail {
        Tail {
            n: usize::try_from(n).unwrap_or(usize::MAX),
            kept: VecDeque::new(),
        }
    }

    /// Offers one record.
    pub fn push(&mut self, r: Record) {
        if self.n == 0 {
            return;
        }
        if self.kept.len() == self.n {
            self.kept.pop_front();
        }
        self.kept.push_back(r);
    }

    /// The kept records, oldest first.
    pub fn into_records(self) -> impl Iterator<Item = Record> {
        self.kept.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::path::parse_target;

    fn opts(q: &str) -> Result<LogOptions, String> {
        let t = parse_target(&format!("/containerLogs/a/b/c?{q}")).unwrap();
        LogOptions::from_query(&t, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
    }

    #[test]
    fn query_options_follow_the_upstream_rules() {
        let o = opts("follow=true&previous=1&timestamps=T&tailLines=5&limitBytes=10").unwrap();
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(10)));
        let o = opts("sinceSeconds=10").unwrap();
        assert_eq!(
            o.since,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999_990))
        );
        let o = opts("sinceTime=1970-01-02T00:00:00Z").unwrap();
        assert_eq!(
            o.since,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
        );
        assert_eq!(opts("tailLines=0").unwrap().tail_lines, Some(0));
        // PodLogOptions validation: negative tail, zero limit/since, both since forms.
        for bad in [
            "tailLines=-5",
            "tailLines=99999999999999999999999",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=1&sinceTime=1970-01-02T00:00:00Z",
            "sinceTime=yesterday",
            "follow=maybe",
        ] {
            assert!(opts(bad).is_err(), "{bad}");
        }
        // A huge sinceSeconds reaches back to the epoch, not a panic.
        assert_eq!(
            opts("sinceSeconds=9223372036854775807").unwrap().since,
            Some(SystemTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn partial_lines_are_joined_across_any_chunking() {
        let text = b"2024-01-01T00:00:00.000000001Z stdout P hel\n\
                     2024-01-01T00:00:00.000000002Z stdout P lo \n\
                     2024-01-01T00:00:00.000000003Z stdout F world\n\
                     2024-01-01T00:00:01Z stderr F oops\n\
                     garbage\n\
                     2024-01-01T00:00:02Z stdout F \n";
        for chunk in [1, 3, 7, text.len()] {
            let mut d = Decoder::default();
            let mut recs = Vec::new();
            for c in text.chunks(chunk) {
                recs.extend(d.feed(c));
            }
            assert_eq!(recs.len(), 3, "chunk {chunk}");
            assert_eq!(recs[0].content, b"hello world\n");
            assert_eq!(recs[0].timestamp, "2024-01-01T00:00:00.000000001Z");
            assert_eq!(recs[1].stream, "stderr");
            assert_eq!(recs[1].content, b"oops\n");
            assert_eq!(recs[2].content, b"\n");
            assert_eq!(d.malformed, 1);
            assert!(d.finish().is_none());
        }
    }

    #[test]
    fn an_unfinished_partial_line_is_emitted_at_the_end() {
        let mut d = Decoder::default();
        assert!(d.feed(b"2024-01-01T00:00:00Z stdout P no end\n").is_empty());
        assert_eq!(d.finish().unwrap().content, b"no end");
    }

    #[test]
    fn output_applies_since_timestamps_and_limit() {
        let mut d = Decoder::default();
        let recs = d.feed(
            b"1970-01-01T00:00:01Z stdout F one\n\
              1970-01-01T00:00:02Z stdout F two\n\
              1970-01-01T00:00:03Z stdout F three\n",
        );
        let mut o = Output::new(&LogOptions {
            since: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2)),
            timestamps: true,
            ..Default::default()
        });
        let mut buf = Vec::new();
        for r in &recs {
            o.render(r, &mut buf);
        }
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "1970-01-01T00:00:02Z two\n1970-01-01T00:00:03Z three\n"
        );
        let mut o = Output::new(&LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        });
        let mut buf = Vec::new();
        for r in &recs {
            o.render(r, &mut buf);
        }
        assert_eq!(buf, b"one\ntw");
        assert!(o.done());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut d = Decoder::default();
        let mut t = Tail::new(2);
        for r in d.feed(b"x stdout F 1\nx stdout F 2\nx stdout F 3\n") {
            t.push(r);
        }
        let kept: Vec<_> = t.into_records().map(|r| r.content).collect();
        assert_eq!(kept, [b"2\n".to_vec(), b"3\n".to_vec()]);
        let mut none = Tail::new(0);
        none.push(d.feed(b"x stdout F 1\n").remove(0));
        assert_eq!(none.into_records().count(), 0);
        // A huge tail keeps everything it is given without reserving for it.
        let mut all = Tail::new(u64::MAX);
        all.push(d.feed(b"x stdout F 1\n").remove(0));
        assert_eq!(all.into_records().count(), 1);
    }
}
