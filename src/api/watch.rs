//! List+watch for flaky links, built from small pieces:
//!
//! - [`LineDecoder`] splits a newline-delimited stream at arbitrary chunk boundaries with a
//!   bounded line size; [`EventDecoder`] turns those lines into typed `WatchEvent`s.
//! - [`Store`] is the local cache keyed by `namespace/name`.
//! - [`Informer`] is the sans-I/O state machine: list → watch from the list's resourceVersion
//!   → apply events → on 410 Gone re-list (emitting a full resync) → on transport errors back
//!   off and re-watch from the last resourceVersion; or poll-only (periodic lists).
//! - [`ListWatch`] is the thin blocking driver that runs an `Informer` against a [`Client`].
//!
//! Owns keeping a local view in sync with the server; what the objects mean is the consumer's
//! business. Nothing here sleeps except through the callback the caller hands to `ListWatch`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::backoff::{random_between, Backoff, BackoffConfig, RandomSource, XorShift64};
use super::client::{ApiError, ApiErrorKind, Client, ListParams};
use super::linkhealth::LinkCursor;
use crate::k8s::list::{List, WatchEvent};
use crate::k8s::meta::ObjectMeta;

/// Default bound on one watch event line (one object): etcd's default request limit is
/// 1.5 MiB, so 4 MiB leaves room for the event envelope and JSON escaping while keeping an
/// edge agent's memory bounded.
pub const DEFAULT_MAX_LINE: usize = 4 << 20;

/// Why a watch stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchDecodeError {
    /// A line grew beyond the limit without a newline.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A complete line is not a valid watch event.
    Json {
        /// The JSON decoder's complaint.
        message: String,
    },
    /// The stream ended in the middle of an event.
    Truncated {
        /// Bytes of the cut-off event.
        bytes: usize,
    },
}

impl fmt::Display for WatchDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchDecodeError::LineTooLong { limit } => write!(
                f,
                "watch event line exceeds the limit of {limit} bytes without a newline"
            ),
            WatchDecodeError::Json { message } => write!(f, "invalid watch event: {message}"),
            WatchDecodeError::Truncated { bytes } => {
                write!(
                    f,
                    "watch stream ended inside an event ({bytes} bytes unterminated)"
                )
            }
        }
    }
}

impl std::error::Error for WatchDecodeError {}

/// Splits a byte stream into lines; memory stays under `max_line` plus one pushed chunk.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    /// Where the search for the next newline resumes, so each byte is scanned once.
    scanned: usize,
    max_line: usize,
    failed: bool,
}

impl LineDecoder {
    /// A decoder refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        LineDecoder {
            buf: Vec::new(),
            scanned: 0,
            max_line,
            failed: false,
        }
    }

    /// Appends received bytes; call [`LineDecoder::next_line`] until `None` before pushing again.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete, non-blank line (without `\n` / `\r\n`), if one is buffered.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, WatchDecodeError> {
        loop {
            if self.failed {
                return Err(WatchDecodeError::LineTooLong {
                    limit: self.max_line,
                });
            }
            let tail = self.buf.get(self.scanned..).unwrap_or_default();
            match tail.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let end = self.scanned + pos;
                    if end > self.max_line {
                        return Err(self.fail());
                    }
                    let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                    self.scanned = 0;
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(Some(line));
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.buf.len() > self.max_line {
                        return Err(self.fail());
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn fail(&mut self) -> WatchDecodeError {
        self.failed = true;
        self.buf = Vec::new();
        WatchDecodeError::LineTooLong {
            limit: self.max_line,
        }
    }

    /// At end of stream: the unterminated remainder, if it is more than whitespace.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        let rest = std::mem::take(&mut self.buf);
        if rest.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(rest)
        }
    }

    /// Bytes currently held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Decodes a watch stream into typed events, chunk by chunk.
#[derive(Debug)]
pub struct EventDecoder<T> {
    lines: LineDecoder,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> EventDecoder<T> {
    /// A decoder with the given line limit.
    pub fn new(max_line: usize) -> Self {
        EventDecoder {
            lines: LineDecoder::new(max_line),
            _t: PhantomData,
        }
    }

    /// Appends received bytes; drain with [`EventDecoder::next_event`] before pushing again.
    pub fn push(&mut self, chunk: &[u8]) {
        self.lines.push(chunk);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<WatchEvent<T>>, WatchDecodeError> {
        match self.lines.next_line()? {
            Some(line) => decode_event(&line).map(Some),
            None => Ok(None),
        }
    }

    /// At end of stream: an error if an event was cut off. A final event that is complete
    /// JSON but lacks its newline is still delivered.
    pub fn finish(&mut self) -> Result<Option<WatchEvent<T>>, WatchDecodeError> {
        match self.lines.finish() {
            None => Ok(None),
            Some(rest) => match decode_event(&rest) {
                Ok(ev) => Ok(Some(ev)),
                Err(_) => Err(WatchDecodeError::Truncated { bytes: rest.len() }),
            },
        }
    }

    /// Bytes currently held.
    pub fn buffered(&self) -> usize {
        self.lines.buffered()
    }
}

/// Decodes one line of a watch stream.
pub fn decode_event<T: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<T>, WatchDecodeError> {
    serde_json::from_slice(line).map_err(|e| WatchDecodeError::Json {
        message: e.to_string(),
    })
}

/// An object of any kind, undecoded: for generic tools, tests and fuzzing.
pub type RawObject = serde_json::Value;

/// How an object is found in the store: `namespace/name`, from its metadata.
pub type MetaFn<T> = fn(&T) -> &ObjectMeta;

/// The local cache of one resource, keyed by `namespace/name`.
#[derive(Debug, Clone)]
pub struct Store<T> {
    objects: BTreeMap<String, T>,
    meta: MetaFn<T>,
}

impl<T> Store<T> {
    /// An empty store reading keys through `meta`.
    pub fn new(meta: MetaFn<T>) -> Self {
        Store {
            objects: BTreeMap::new(),
            meta,
        }
    }

    /// The object with this `namespace/name` key.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.objects.get(key)
    }

    /// All objects in key order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.objects.values()
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn key(&self, obj: &T) -> String {
        (self.meta)(obj).key()
    }

    fn apply(&mut self, obj: T) {
        let k = self.key(&obj);
        self.objects.insert(k, obj);
    }

    fn remove(&mut self, obj: &T) {
        let k = self.key(obj);
        self.objects.remove(&k);
    }

    fn replace(&mut self, items: Vec<T>) {
        self.objects.clear();
        for o in items {
            self.apply(o);
        }
    }

    /// The objects in key order, the store used up.
    pub fn into_items(self) -> Vec<T> {
        self.objects.into_values().collect()
    }
}

/// What a consumer of an informer sees.
#[derive(Debug, Clone, PartialEq)]
pub enum InformerEvent<T> {
    /// Added or modified.
    Applied(T),
    /// Removed from the server (final state attached).
    Deleted(T),
    /// The complete current set after a (re-)list: diff it against your own state, since
    /// deletions during a disconnection are only visible this way.
    Resync(Vec<T>),
}

/// Long-lived watch streams, or periodic lists for proxies that kill long streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// List once, then keep a watch stream open.
    Watch,
    /// Like `Watch`, but the initial state also arrives as watch events
    /// (`sendInitialEvents=true`) ending with the `k8s.io/initial-events-end` bookmark, so no
    /// large list response is ever buffered. Falls back to `Watch` if the server refuses it.
    StreamingList,
    /// List every `interval`; never hold a stream open.
    Poll {
        /// Time between the end of one list and the start of the next.
        interval: Duration,
    },
}

/// Informer tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InformerConfig {
    /// Watch or poll.
    pub mode: WatchMode,
    /// Each watch asks the server to end it after a random time in this range, so connections
    /// rotate and many nodes do not reconnect in lockstep. 30–60 min (client-go: 5–10): the
    /// once-a-minute bookmarks keep a long watch's resourceVersion fresh and prove the link
    /// alive, and every rotation costs an idle link a request and a response head.
    pub watch_timeout_min: Duration,
    /// Upper end of the watch timeout range.
    pub watch_timeout_max: Duration,
    /// Retry timing after failures.
    pub backoff: BackoffConfig,
}

impl Default for InformerConfig {
    fn default() -> Self {
        InformerConfig {
            mode: WatchMode::Watch,
            watch_timeout_min: Duration::from_secs(1800),
            watch_timeout_max: Duration::from_secs(3600),
            backoff: BackoffConfig::default(),
        }
    }
}

/// What the informer wants its driver to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// List, then report with [`Informer::list_done`].
    List,
    /// Open a watch from this resourceVersion; report events with [`Informer::watch_event`]
    /// and the end of the stream with [`Informer::watch_ended`].
    Watch {
        /// Watch from here (the last version seen).
        resource_version: String,
        /// `timeoutSeconds` for the server.
        timeout_seconds: u64,
    },
    /// Open a streaming list (a watch that starts with the current state); report like a
    /// watch. Only in [`WatchMode::StreamingList`].
    WatchList {
        /// `timeoutSeconds` for the server.
        timeout_seconds: u64,
    },
    /// Nothing to do for this long.
    Sleep(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    List,
    Watch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready(Next),
    /// `backoff`: the wait is a back-off after failures (a link recovery may cut it), not a
    /// poll interval nor a server's Retry-After.
    Waiting {
        until: Instant,
        then: Next,
        backoff: bool,
    },
    Listing,
    Watching,
}

/// The list+watch state machine (sans-I/O): feed it results, it says what to do next.
///
/// It keeps no copy of the objects: its consumer holds what it needs of them, and diffs a
/// [`InformerEvent::Resync`] against that. Only a streaming list's initial set is held, until
/// it is complete.
pub struct Informer<T> {
    config: InformerConfig,
    meta: MetaFn<T>,
    resource_version: String,
    state: State,
    backoff: Backoff,
    rng: Box<dyn RandomSource + Send>,
    /// The set being rebuilt by a streaming list, until its initial-events-end bookmark.
    initial: Option<Store<T>>,
}

impl<T> fmt::Debug for Informer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Informer")
            .field("state", &self.state)
            .field("resource_version", &self.resource_version)
            .field("initial", &self.initial.as_ref().map(Store::len))
            .finish()
    }
}

impl<T: Clone> Informer<T> {
    /// A new informer; `meta` gives each object's metadata (e.g. `|p: &Pod| &p.metadata`).
    pub fn new(config: InformerConfig, meta: MetaFn<T>) -> Self {
        Self::with_rng(config, meta, Box::new(XorShift64::from_entropy()))
    }

    /// As [`Informer::new`] with an injected random source (tests, reproducible runs).
    pub fn with_rng(
        config: InformerConfig,
        meta: MetaFn<T>,
        rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        Informer {
            config,
            meta,
            resource_version: String::new(),
            state: State::Ready(Next::List),
            backoff: Backoff::new(config.backoff),
            rng,
            initial: None,
        }
    }

    /// The last resourceVersion seen (from a list, an event or a bookmark).
    pub fn resource_version(&self) -> &str {
        &self.resource_version
    }

    /// True while a watch stream should be read; false after an ERROR event ended it.
    pub fn is_watching(&self) -> bool {
        self.state == State::Watching
    }

    /// The next thing to do at time `now`.
    pub fn next_action(&mut self, now: Instant) -> Action {
        if let State::Waiting { until, then, .. } = self.state {
            if now < until {
                return Action::Sleep(until - now);
            }
            self.state = State::Ready(then);
        }
        let watch_from_version =
            self.state == State::Ready(Next::Watch) && !self.resource_version.is_empty();
        if watch_from_version {
            self.state = State::Watching;
            return Action::Watch {
                resource_version: self.resource_version.clone(),
                timeout_seconds: self.watch_timeout(),
            };
        }
        // Ready to list, or asked again while a request is out (the driver lost track): start
        // over cleanly. A watch without a version would replay "now" and miss changes.
        if self.config.mode == WatchMode::StreamingList {
            self.state = State::Watching;
            self.initial = Some(Store::new(self.meta));
            return Action::WatchList {
                timeout_seconds: self.watch_timeout(),
            };
        }
        self.state = State::Listing;
        Action::List
    }

    fn watch_timeout(&mut self) -> u64 {
        let t = random_between(
            self.rng.as_mut(),
            self.config.watch_timeout_min,
            self.config
                .watch_timeout_max
                .max(self.config.watch_timeout_min),
        );
        t.as_secs().max(1)
    }

    /// Reports the result of the list asked for by [`Action::List`].
    pub fn list_done(
        &mut self,
        now: Instant,
        result: Result<List<T>, ApiError>,
    ) -> Option<InformerEvent<T>> {
        match result {
            Ok(list) => {
                self.backoff.on_success(now);
                self.resource_version = list.metadata.resource_version;
                let mut set = Store::new(self.meta);
                set.replace(list.items);
                self.state = match self.config.mode {
                    WatchMode::Watch | WatchMode::StreamingList => State::Ready(Next::Watch),
                    WatchMode::Poll { interval } => State::Waiting {
                        until: now + interval,
                        then: Next::List,
                        backoff: false,
                    },
                };
                Some(InformerEvent::Resync(set.into_items()))
            }
            Err(e) => {
                self.fail(now, e.retry_after, Next::List);
                None
            }
        }
    }

    /// Applies one event of the current watch.
    pub fn watch_event(&mut self, now: Instant, event: WatchEvent<T>) -> Option<InformerEvent<T>> {
        if self.state != State::Watching {
            return None;
        }
        self.backoff.on_success(now);
        if self.initial.is_some() {
            return self.initial_event(now, event);
        }
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                self.note_version(&o);
                Some(InformerEvent::Applied(o))
            }
            WatchEvent::Deleted(o) => {
                self.note_version(&o);
                Some(InformerEvent::Deleted(o))
            }
            WatchEvent::Bookmark(b) => {
                if !b.resource_version.is_empty() {
                    self.resource_version = b.resource_version;
                }
                None
            }
            WatchEvent::Error(status) if status.code == 410 => {
                self.gone();
                None
            }
            WatchEvent::Error(status) => {
                self.fail(now, status_retry_after(&status), Next::Watch);
                None
            }
        }
    }

    /// An event of a streaming list before its initial-events-end bookmark.
    fn initial_event(&mut self, now: Instant, event: WatchEvent<T>) -> Option<InformerEvent<T>> {
        let pending = self.initial.as_mut()?;
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => pending.apply(o),
            WatchEvent::Deleted(o) => pending.remove(&o),
            WatchEvent::Bookmark(b) if b.is_initial_events_end() => {
                self.resource_version = b.resource_version;
                let done = self.initial.take().map(Store::into_items);
                return Some(InformerEvent::Resync(done.unwrap_or_default()));
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(status) if status.code == 410 => self.gone(),
            WatchEvent::Error(status) => {
                self.fail(now, status_retry_after(&status), Next::List);
            }
        }
        None
    }

    /// Reports that the watch stream ended: `Ok` for a normal close (server timeout).
    pub fn watch_ended(&mut self, now: Instant, result: Result<(), ApiError>) {
        if self.state != State::Watching {
            return;
        }
        if self.initial.is_some() {
            return self.streaming_list_ended(now, result);
        }
        match result {
            Ok(()) => self.state = State::Ready(Next::Watch),
            Err(e) if e.is_gone() => self.gone(),
            Err(e) => self.fail(now, e.retry_after, Next::Watch),
        }
    }

    fn streaming_list_ended(&mut self, now: Instant, result: Result<(), ApiError>) {
        self.initial = None;
        match result {
            // Closed before the initial set was complete: it has to start over, after a
            // back-off so a server that always does this is not hammered.
            Ok(()) => self.fail(now, None, Next::List),
            Err(e) if e.is_gone() => self.gone(),
            // 400/422: the server does not offer streaming lists; use plain lists for good.
            Err(e) if matches!(e.code(), Some(400) | Some(422)) => {
                log::info!("streaming list refused ({e}); falling back to list+watch");
                self.config.mode = WatchMode::Watch;
                self.state = State::Ready(Next::List);
            }
            Err(e) => self.fail(now, e.retry_after, Next::List),
        }
    }

    fn gone(&mut self) {
        // The version is compacted away: only a fresh list can tell what changed meanwhile.
        self.resource_version.clear();
        self.initial = None;
        self.state = State::Ready(Next::List);
    }

    /// Another client got through after the link failed: a wait grown during the outage is
    /// cut to this informer's first jittered delay, and the back-off starts over.
    pub fn link_recovered(&mut self, now: Instant) {
        match self.state {
            State::Waiting {
                until,
                then,
                backoff: true,
            } => {
                let delay = self.backoff.on_link_recovered(now, self.rng.as_mut());
                self.state = State::Waiting {
                    until: until.min(now + delay),
                    then,
                    backoff: true,
                };
            }
            // A poll interval or a server's Retry-After is not shortened.
            _ => self.backoff.reset(),
        }
    }

    /// True while waiting out a back-off that [`Informer::link_recovered`] would cut short.
    pub fn in_backoff(&self) -> bool {
        matches!(self.state, State::Waiting { backoff: true, .. })
    }

    fn fail(&mut self, now: Instant, retry_after: Option<Duration>, then: Next) {
        // A half-received streaming list is worthless once the stream is gone.
        let then = if self.initial.take().is_some() {
            Next::List
        } else {
            then
        };
        let delay = self.backoff.on_failure(now, retry_after, self.rng.as_mut());
        self.state = State::Waiting {
            until: now + delay,
            then,
            backoff: retry_after.is_none(),
        };
    }

    fn note_version(&mut self, obj: &T) {
        let rv = &(self.meta)(obj).resource_version;
        if !rv.is_empty() {
            self.resource_version.clone_from(rv);
        }
    }
}

fn status_retry_after(status: &crate::k8s::status::Status) -> Option<Duration> {
    status
        .details
        .as_ref()
        .and_then(|d| u64::try_from(d.retry_after_seconds).ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// Blocking driver: runs an [`Informer`] against a [`Client`] for one collection path.
pub struct ListWatch<T> {
    client: Client,
    path: String,
    params: ListParams,
    informer: Informer<T>,
    stream: Option<super::client::WatchStream<T>>,
    clock: Box<dyn FnMut() -> Instant + Send>,
    link: LinkCursor,
}

/// Objects per page of a [`ListWatch`]'s lists (client-go's informers ask for 500 too): an
/// answer of a large cluster is read, decoded and freed a page at a time, not as one body of
/// tens of megabytes.
pub const LIST_PAGE: u32 = 500;

/// Longest single sleep of a waiting [`ListWatch`]: how soon it notices that another client of
/// the link got through.
pub const LINK_CHECK: Duration = Duration::from_millis(250);

impl<T: DeserializeOwned + Clone> ListWatch<T> {
    /// Watches `path` (e.g. `/api/v1/pods`) with the given selectors; lists in pages of
    /// `params.limit`, [`LIST_PAGE`] when it is not set.
    pub fn new(client: Client, path: &str, mut params: ListParams, informer: Informer<T>) -> Self {
        params.limit = params.limit.or(Some(LIST_PAGE));
        ListWatch {
            link: client.link_health().cursor(),
            client,
            path: path.to_string(),
            params,
            informer,
            stream: None,
            clock: Box::new(Instant::now),
        }
    }

    /// Replaces the clock (tests pair it with a `sleep` that advances fake time).
    pub fn with_clock(mut self, clock: Box<dyn FnMut() -> Instant + Send>) -> Self {
        self.clock = clock;
        self
    }

    /// The informer (and through it the store).
    pub fn informer(&self) -> &Informer<T> {
        &self.informer
    }

    /// Blocks until the next event. Waits only through `sleep`, which returns false to stop
    /// (then `None` is returned); that is also how a caller shuts the loop down.
    pub fn next_event(
        &mut self,
        sleep: &mut dyn FnMut(Duration) -> bool,
    ) -> Option<InformerEvent<T>> {
        loop {
            if let Some(stream) = self.stream.as_mut() {
                let now = (self.clock)();
                let health = self.client.link_health();
                match stream.next_event() {
                    Ok(Some(ev)) => {
                        health.success(now);
                        let out = self.informer.watch_event(now, ev);
                        if !self.informer.is_watching() {
                            self.stream = None;
                        }
                        if out.is_some() {
                            return out;
                        }
                    }
                    Ok(None) => {
                        self.stream = None;
                        self.informer.watch_ended(now, Ok(()));
                    }
                    Err(e) => {
                        log::warn!("watch {}: {e}", self.path);
                        if matches!(e.kind, ApiErrorKind::Transport(_)) {
                            health.failure(now);
                        }
                        self.stream = None;
                        self.informer.watch_ended(now, Err(e));
                    }
                }
                continue;
            }
            if self.link.recovered(self.client.link_health().generation()) {
                self.informer.link_recovered((self.clock)());
            }
            match self.informer.next_action((self.clock)()) {
                Action::List => {
                    let r = self.client.list::<T>(&self.path, &self.params);
                    if let Err(e) = &r {
                        log::warn!("list {}: {e}", self.path);
                    }
                    if let Some(ev) = self.informer.list_done((self.clock)(), r) {
                        return Some(ev);
                    }
                }
                Action::Watch {
                    resource_version,
                    timeout_seconds,
                } => {
                    match self.client.watch::<T>(
                        &self.path,
                        &self.params,
                        &resource_version,
                        timeout_seconds,
                    ) {
                        Ok(s) => self.stream = Some(s),
                        Err(e) => {
                            log::warn!("watch {}: {e}", self.path);
                            self.informer.watch_ended((self.clock)(), Err(e));
                        }
                    }
                }
                Action::WatchList { timeout_seconds } => {
                    match self
                        .client
                        .watch_list::<T>(&self.path, &self.params, timeout_seconds)
                    {
                        Ok(s) => self.stream = Some(s),
                        Err(e) => {
                            log::warn!("streaming list {}: {e}", self.path);
                            self.informer.watch_ended((self.clock)(), Err(e));
                        }
                    }
                }
                // A back-off in slices: a recovery seen by another client cuts it short.
                Action::Sleep(d) => {
                    let d = if self.informer.in_backoff() {
                        d.min(LINK_CHECK)
                    } else {
                        d
                    };
                    if !sleep(d) {
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::client::ApiErrorKind;
    use crate::k8s::meta::ListMeta;
    use crate::k8s::status::Status;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    #[serde(default)]
    struct Obj {
        metadata: ObjectMeta,
        v: u32,
    }

    fn obj(ns: &str, name: &str, rv: &str, v: u32) -> Obj {
        Obj {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                resource_version: rv.into(),
                ..Default::default()
            },
            v,
        }
    }

    fn list(rv: &str, items: Vec<Obj>) -> List<Obj> {
        List {
            metadata: ListMeta {
                resource_version: rv.into(),
                ..Default::default()
            },
            items,
        }
    }

    fn meta(o: &Obj) -> &ObjectMeta {
        &o.metadata
    }

    fn informer(mode: WatchMode) -> Informer<Obj> {
        Informer::with_rng(
            InformerConfig {
                mode,
                ..Default::default()
            },
            meta,
            Box::new(XorShift64::new(1)),
        )
    }

    fn transport() -> ApiError {
        ApiError::new(
            "GET",
            "/x",
            ApiErrorKind::Transport("connection reset".into()),
        )
    }

    fn status_err(code: u16, retry_after: Option<Duration>) -> ApiError {
        let mut e = ApiError::new(
            "GET",
            "/x",
            ApiErrorKind::Status {
                code,
                reason: String::new(),
                message: String::new(),
            },
        );
        e.retry_after = retry_after;
        e
    }

    // ---- line and event decoding ----

    const STREAM: &str = concat!(
        r#"{"type":"ADDED","object":{"metadata":{"name":"a","namespace":"n","resourceVersion":"2"},"v":1}}"#,
        "\n",
        r#"{"type":"MODIFIED","object":{"metadata":{"name":"a","namespace":"n","resourceVersion":"3"},"v":2}}"#,
        "\r\n\n",
        r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#,
        "\n",
        r#"{"type":"DELETED","object":{"metadata":{"name":"a","namespace":"n","resourceVersion":"10"},"v":2}}"#,
        "\n",
    );

    fn decode_in_chunks(data: &[u8], chunk: usize) -> Vec<WatchEvent<Obj>> {
        let mut d = EventDecoder::<Obj>::new(1024);
        let mut out = vec![];
        for c in data.chunks(chunk.max(1)) {
            d.push(c);
            while let Some(e) = d.next_event().unwrap() {
                out.push(e);
            }
        }
        assert_eq!(d.finish().unwrap(), None);
        out
    }

    #[test]
    fn any_chunking_yields_the_same_events() {
        let whole = decode_in_chunks(STREAM.as_bytes(), STREAM.len());
        assert_eq!(whole.len(), 4);
        for size in 1..64 {
            assert_eq!(
                decode_in_chunks(STREAM.as_bytes(), size),
                whole,
                "chunk {size}"
            );
        }
        // Random chunk boundaries too.
        let mut rng = XorShift64::new(3);
        for _ in 0..200 {
            let mut d = EventDecoder::<Obj>::new(1024);
            let mut out = vec![];
            let mut rest = STREAM.as_bytes();
            while !rest.is_empty() {
                let n = (rng.next_u64() as usize % 40 + 1).min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(e) = d.next_event().unwrap() {
                    out.push(e);
                }
            }
            assert_eq!(out, whole);
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let events = vec![
            WatchEvent::Added(obj("n", "a", "1", 1)),
            WatchEvent::Deleted(obj("", "b", "2", 0)),
            WatchEvent::Error(Status {
                code: 410,
                ..Default::default()
            }),
        ];
        let mut wire = Vec::new();
        for e in &events {
            wire.extend(serde_json::to_vec(e).unwrap());
            wire.push(b'\n');
        }
        assert_eq!(decode_in_chunks(&wire, 7), events);
    }

    #[test]
    fn endless_line_is_refused_at_the_limit_with_bounded_memory() {
        let mut d = LineDecoder::new(4096);
        let chunk = [b'x'; 1000];
        let mut err = None;
        for _ in 0..100_000 {
            d.push(&chunk);
            assert!(d.buffered() <= 4096 + chunk.len());
            if let Err(e) = d.next_line() {
                err = Some(e);
                break;
            }
        }
        let e = err.unwrap();
        assert_eq!(e, WatchDecodeError::LineTooLong { limit: 4096 });
        assert!(e.to_string().contains("4096"));
        // It stays failed and holds nothing.
        d.push(b"\n");
        assert!(d.next_line().is_err());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn long_line_in_one_chunk_is_refused() {
        let mut d = LineDecoder::new(10);
        d.push(b"0123456789012\nok\n");
        assert!(d.next_line().is_err());
        let mut d = LineDecoder::new(10);
        d.push(b"0123456789\nok\n");
        assert_eq!(d.next_line().unwrap().unwrap(), b"0123456789");
        assert_eq!(d.next_line().unwrap().unwrap(), b"ok");
        assert_eq!(d.next_line().unwrap(), None);
    }

    #[test]
    fn truncated_and_invalid_events_are_errors() {
        let mut d = EventDecoder::<Obj>::new(1024);
        d.push(br#"{"type":"ADDED","object":{"metad"#);
        assert_eq!(d.next_event().unwrap(), None);
        assert!(matches!(
            d.finish(),
            Err(WatchDecodeError::Truncated { .. })
        ));

        let mut d = EventDecoder::<Obj>::new(1024);
        d.push(b"not json\n");
        assert!(matches!(d.next_event(), Err(WatchDecodeError::Json { .. })));
        d.push(br#"{"type":"ADDED","object":{"v":"wrong type"}}"#);
        d.push(b"\n");
        assert!(matches!(d.next_event(), Err(WatchDecodeError::Json { .. })));

        // A last event without its newline but complete is still delivered.
        let mut d = EventDecoder::<Obj>::new(1024);
        d.push(br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"5"}}}"#);
        assert!(matches!(d.finish(), Ok(Some(WatchEvent::Bookmark(_)))));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift64::new(99);
        for _ in 0..2000 {
            let mut d = EventDecoder::<serde_json::Value>::new(256);
            let n = rng.next_u64() as usize % 600;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    let r = rng.next_u64();
                    // Bias towards JSON-ish bytes and newlines so decoding paths are reached.
                    b"{}\":,\n[]ADEDtypeobject 0123"[(r % 27) as usize]
                })
                .collect();
            for c in bytes.chunks(17) {
                d.push(c);
                while let Ok(Some(_)) = d.next_event() {}
            }
            let _ = d.finish();
        }
    }

    // ---- informer ----

    #[test]
    fn list_then_watch_from_list_version_then_apply_events() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        assert_eq!(inf.next_action(t0), Action::List);
        let ev = inf.list_done(t0, Ok(list("5", vec![obj("n", "a", "4", 1)])));
        assert_eq!(ev, Some(InformerEvent::Resync(vec![obj("n", "a", "4", 1)])));
        let Action::Watch {
            resource_version,
            timeout_seconds,
        } = inf.next_action(t0)
        else {
            panic!()
        };
        assert_eq!(resource_version, "5");
        assert!((1800..=3600).contains(&timeout_seconds));
        assert!(inf.is_watching());

        let b = obj("n", "b", "6", 1);
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Added(b.clone())),
            Some(InformerEvent::Applied(b.clone()))
        );
        assert_eq!(inf.resource_version(), "6");
        let bm = crate::k8s::list::Bookmark {
            resource_version: "8".into(),
            ..Default::default()
        };
        assert_eq!(inf.watch_event(t0, WatchEvent::Bookmark(bm)), None);
        assert_eq!(inf.resource_version(), "8");
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Deleted(obj("n", "a", "9", 1))),
            Some(InformerEvent::Deleted(obj("n", "a", "9", 1)))
        );

        // Server closes the stream at its timeout: re-watch at once from the last version.
        inf.watch_ended(t0, Ok(()));
        assert!(
            matches!(inf.next_action(t0), Action::Watch { resource_version, .. } if resource_version == "9")
        );
    }

    #[test]
    fn gone_error_event_relists_and_resyncs() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        inf.list_done(t0, Ok(list("5", vec![obj("n", "a", "4", 1)])));
        inf.next_action(t0);
        let gone = Status {
            kind: "Status".into(),
            code: 410,
            reason: "Expired".into(),
            ..Default::default()
        };
        assert_eq!(inf.watch_event(t0, WatchEvent::Error(gone)), None);
        assert!(!inf.is_watching());
        assert_eq!(inf.resource_version(), "");
        // Re-list immediately (no back-off for 410) and resync to the new full set.
        assert_eq!(inf.next_action(t0), Action::List);
        let ev = inf.list_done(t0, Ok(list("50", vec![obj("n", "c", "49", 1)])));
        assert_eq!(
            ev,
            Some(InformerEvent::Resync(vec![obj("n", "c", "49", 1)]))
        );
        assert!(
            matches!(inf.next_action(t0), Action::Watch { resource_version, .. } if resource_version == "50")
        );
    }

    #[test]
    fn http_410_on_watch_relists() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        inf.list_done(t0, Ok(list("5", vec![])));
        inf.next_action(t0);
        inf.watch_ended(t0, Err(status_err(410, None)));
        assert_eq!(inf.next_action(t0), Action::List);
    }

    #[test]
    fn transport_error_backs_off_then_rewatches_from_last_version() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        inf.list_done(t0, Ok(list("5", vec![])));
        inf.next_action(t0);
        inf.watch_event(t0, WatchEvent::Added(obj("n", "a", "7", 1)));
        inf.watch_ended(t0, Err(transport()));
        let Action::Sleep(d) = inf.next_action(t0) else {
            panic!()
        };
        assert!(d <= Duration::from_millis(800));
        let t1 = t0 + d;
        assert!(
            matches!(inf.next_action(t1), Action::Watch { resource_version, .. } if resource_version == "7")
        );
        // Repeated failures grow the ceiling.
        let mut now = t1;
        let mut max_seen = Duration::ZERO;
        for _ in 0..12 {
            inf.watch_ended(now, Err(transport()));
            match inf.next_action(now) {
                Action::Sleep(d) => {
                    max_seen = max_seen.max(d);
                    now += d;
                    assert!(matches!(inf.next_action(now), Action::Watch { .. }));
                }
                Action::Watch { .. } => {} // jitter may draw zero
                Action::List => panic!("transport errors must not relist"),
                Action::WatchList { .. } => panic!("not in streaming mode"),
            }
        }
        assert!(max_seen > Duration::from_secs(2), "{max_seen:?}");
        assert!(max_seen <= Duration::from_secs(30));
    }

    #[test]
    fn link_recovery_cuts_a_long_wait_to_a_first_delay() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        inf.list_done(t0, Ok(list("5", vec![])));
        inf.next_action(t0);
        // An outage: the watch fails until its back-off reaches the 30 s cap.
        let mut now = t0;
        for _ in 0..10 {
            inf.watch_ended(now, Err(transport()));
            if let Action::Sleep(d) = inf.next_action(now) {
                now += d;
            }
            inf.next_action(now);
        }
        inf.watch_ended(now, Err(transport()));
        // Force a long wait whatever the jitter drew, then let the Lease get through.
        inf.state = State::Waiting {
            until: now + Duration::from_secs(29),
            then: Next::Watch,
            backoff: true,
        };
        inf.link_recovered(now);
        match inf.next_action(now) {
            Action::Sleep(d) => assert!(d <= Duration::from_millis(800), "{d:?}"),
            a => assert!(matches!(a, Action::Watch { .. }), "{a:?}"),
        }
        // The wait is never made longer, and the back-off starts over.
        let mut idle = informer(WatchMode::Watch);
        idle.state = State::Waiting {
            until: t0 + Duration::from_millis(10),
            then: Next::List,
            backoff: true,
        };
        idle.link_recovered(t0);
        assert!(matches!(idle.next_action(t0), Action::Sleep(d) if d <= Duration::from_millis(10)));
        assert_eq!(idle.backoff.failures(), 1);
        // Not waiting (watching): only the back-off is forgotten.
        inf.next_action(now + Duration::from_secs(1));
        inf.link_recovered(now + Duration::from_secs(1));
        assert_eq!(inf.backoff.failures(), 0);
        assert!(inf.is_watching());
        // A server's Retry-After is honoured whatever the link does.
        let mut throttled = informer(WatchMode::Watch);
        throttled.next_action(t0);
        let mut e = transport();
        e.retry_after = Some(Duration::from_secs(20));
        throttled.list_done(t0, Err(e));
        assert!(!throttled.in_backoff());
        throttled.link_recovered(t0);
        assert!(
            matches!(throttled.next_action(t0), Action::Sleep(d) if d >= Duration::from_secs(20))
        );
    }

    #[test]
    fn list_failure_honours_retry_after() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        assert_eq!(
            inf.list_done(t0, Err(status_err(429, Some(Duration::from_secs(42))))),
            None
        );
        assert!(matches!(inf.next_action(t0), Action::Sleep(d) if d >= Duration::from_secs(42)));
        assert!(matches!(
            inf.next_action(t0 + Duration::from_secs(41)),
            Action::Sleep(_)
        ));
        assert_eq!(inf.next_action(t0 + Duration::from_secs(42)), Action::List);
    }

    #[test]
    fn non_410_error_event_backs_off_and_rewatches() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        inf.list_done(t0, Ok(list("5", vec![])));
        inf.next_action(t0);
        let st = Status {
            code: 500,
            details: Some(crate::k8s::status::StatusDetails {
                retry_after_seconds: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        inf.watch_event(t0, WatchEvent::Error(st));
        assert!(matches!(inf.next_action(t0), Action::Sleep(d) if d >= Duration::from_secs(3)));
        assert!(matches!(
            inf.next_action(t0 + Duration::from_secs(60)),
            Action::Watch { .. }
        ));
    }

    #[test]
    fn poll_mode_lists_periodically_and_never_watches() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(20);
        let mut inf = informer(WatchMode::Poll { interval });
        let mut now = t0;
        for i in 0..5 {
            assert_eq!(inf.next_action(now), Action::List);
            let items = (0..i).map(|k| obj("n", &format!("o{k}"), "1", 0)).collect();
            let ev = inf.list_done(now, Ok(list(&i.to_string(), items)));
            assert!(matches!(ev, Some(InformerEvent::Resync(v)) if v.len() == i));
            assert_eq!(inf.next_action(now), Action::Sleep(interval));
            now += interval;
        }
        // List errors back off (not the poll interval) and retry the list.
        inf.next_action(now);
        inf.list_done(now, Err(transport()));
        match inf.next_action(now) {
            Action::Sleep(d) => assert!(d <= Duration::from_millis(800)),
            other => assert_eq!(other, Action::List),
        }
    }

    fn end_bookmark(rv: &str) -> WatchEvent<Obj> {
        let mut b = crate::k8s::list::Bookmark {
            resource_version: rv.into(),
            ..Default::default()
        };
        b.annotations
            .insert(crate::k8s::list::INITIAL_EVENTS_END.into(), "true".into());
        WatchEvent::Bookmark(b)
    }

    #[test]
    fn streaming_list_builds_the_set_then_watches_on() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::StreamingList);
        assert!(
            matches!(inf.next_action(t0), Action::WatchList { timeout_seconds } if (1800..=3600).contains(&timeout_seconds))
        );
        // Initial events are collected silently, replacing whatever was known before.
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Added(obj("n", "a", "3", 1))),
            None
        );
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Added(obj("n", "b", "4", 1))),
            None
        );
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Modified(obj("n", "a", "5", 2))),
            None
        );
        let plain = crate::k8s::list::Bookmark {
            resource_version: "5".into(),
            ..Default::default()
        };
        assert_eq!(inf.watch_event(t0, WatchEvent::Bookmark(plain)), None);
        let ev = inf.watch_event(t0, end_bookmark("6"));
        assert_eq!(
            ev,
            Some(InformerEvent::Resync(vec![
                obj("n", "a", "5", 2),
                obj("n", "b", "4", 1)
            ]))
        );
        assert_eq!(inf.resource_version(), "6");
        // The same stream goes on as an ordinary watch.
        assert!(inf.is_watching());
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Deleted(obj("n", "b", "7", 1))),
            Some(InformerEvent::Deleted(obj("n", "b", "7", 1)))
        );
        // After a normal close it re-watches from the version, no new streaming list.
        inf.watch_ended(t0, Ok(()));
        assert!(
            matches!(inf.next_action(t0), Action::Watch { resource_version, .. } if resource_version == "7")
        );
        // A 410 later starts a fresh streaming list.
        inf.watch_ended(t0, Err(status_err(410, None)));
        assert!(matches!(inf.next_action(t0), Action::WatchList { .. }));
    }

    #[test]
    fn streaming_list_cut_short_starts_over_after_backoff() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::StreamingList);
        inf.next_action(t0);
        inf.watch_event(t0, WatchEvent::Added(obj("n", "a", "3", 1)));
        inf.watch_ended(t0, Err(transport()));
        let mut now = t0;
        if let Action::Sleep(d) = inf.next_action(now) {
            now += d;
        }
        assert!(matches!(inf.next_action(now), Action::WatchList { .. }));
        // Closed cleanly but before the end bookmark: also a restart, never a half set.
        inf.watch_event(now, WatchEvent::Added(obj("n", "a", "3", 1)));
        inf.watch_ended(now, Ok(()));
        let action = inf.next_action(now + Duration::from_secs(60));
        assert!(matches!(action, Action::WatchList { .. }), "{action:?}");
        // The next initial set holds only what the new stream sends.
        now += Duration::from_secs(60);
        inf.watch_event(now, WatchEvent::Added(obj("n", "b", "4", 1)));
        assert_eq!(
            inf.watch_event(now, end_bookmark("5")),
            Some(InformerEvent::Resync(vec![obj("n", "b", "4", 1)]))
        );
    }

    #[test]
    fn streaming_list_refused_falls_back_to_list_and_watch() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::StreamingList);
        inf.next_action(t0);
        inf.watch_ended(t0, Err(status_err(422, None)));
        assert_eq!(inf.next_action(t0), Action::List);
        inf.list_done(t0, Ok(list("5", vec![])));
        assert!(matches!(inf.next_action(t0), Action::Watch { .. }));
        inf.watch_ended(t0, Err(status_err(410, None)));
        assert_eq!(
            inf.next_action(t0),
            Action::List,
            "the fallback is permanent"
        );
    }

    #[test]
    fn events_outside_a_watch_are_ignored() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        assert_eq!(
            inf.watch_event(t0, WatchEvent::Added(obj("n", "a", "1", 1))),
            None
        );
        inf.watch_ended(t0, Err(transport()));
        assert_eq!(inf.next_action(t0), Action::List);
        assert_eq!(
            inf.list_done(t0, Ok(list("2", vec![]))),
            Some(InformerEvent::Resync(vec![]))
        );
    }

    #[test]
    fn cluster_scoped_keys_have_no_namespace() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        let items = vec![obj("", "node-1", "1", 0), obj("a", "node-1", "2", 0)];
        assert_eq!(
            inf.list_done(t0, Ok(list("3", items))),
            Some(InformerEvent::Resync(vec![
                obj("a", "node-1", "2", 0),
                obj("", "node-1", "1", 0),
            ]))
        );
    }

    #[test]
    fn a_resync_is_in_key_order_with_one_object_per_key() {
        let t0 = Instant::now();
        let mut inf = informer(WatchMode::Watch);
        inf.next_action(t0);
        let items = vec![
            obj("n", "b", "3", 1),
            obj("", "n", "4", 1),
            obj("n", "a", "2", 1),
            obj("n", "b", "5", 2),
        ];
        assert_eq!(
            inf.list_done(t0, Ok(list("6", items))),
            Some(InformerEvent::Resync(vec![
                obj("", "n", "4", 1),
                obj("n", "a", "2", 1),
                obj("n", "b", "5", 2),
            ]))
        );
    }
}
