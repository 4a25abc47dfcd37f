//! The streaming half of WATCH: initial events (RV "0"/"" or a streaming list with its
//! `k8s.io/initial-events-end` bookmark), then history events newer than the start RV with
//! selector transitions (an object leaving the selection is DELETED for this watcher), periodic
//! BOOKMARKs, the ERROR/410 event when the start RV is compacted away, and the timeout.
//!
//! It writes newline-delimited JSON events as HTTP chunks into any writer; the HTTP head, the
//! final chunk and the sockets belong to `server`.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fault::TRUNCATED;
use super::handler::{lock, status, Api, WatchPlan};
use super::http;
use super::store::{kind, EventType};

/// Annotation that marks the end of a streaming list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Longest a watcher sleeps before re-checking that the server is still up.
const POLL: Duration = Duration::from_millis(100);

fn visible(plan: &WatchPlan, obj: &Value) -> bool {
    let ns_ok = plan.ns.as_deref().is_none_or(|ns| {
        obj.get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            == Some(ns)
    });
    ns_ok && plan.selector.matches(obj)
}

fn bookmark(plan: &WatchPlan, rv: u64, initial_end: bool) -> Value {
    let k = kind(plan.kind);
    let mut md = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        md["annotations"] = json!({INITIAL_EVENTS_END: "true"});
    }
    json!({"kind": k.kind, "apiVersion": k.api_version(), "metadata": md})
}

struct Sender<'w, W: Write> {
    api: &'w Api,
    w: &'w mut W,
    sent: usize,
    max: Option<usize>,
}

impl<W: Write> Sender<'_, W> {
    fn send(&mut self, typ: &str, object: &Value) -> io::Result<()> {
        if self.max.is_some_and(|m| self.sent >= m) {
            return Err(io::Error::new(
                TRUNCATED,
                "watch truncated by fault injector",
            ));
        }
        let mut line = serde_json::to_vec(&json!({"type": typ, "object": object}))
            .map_err(io::Error::other)?;
        line.push(b'\n');
        http::write_chunk(self.w, &line)?;
        self.w.flush()?;
        self.sent += 1;
        if typ == "ADDED" {
            if let Some(uid) = object
                .get("metadata")
                .and_then(|m| m.get("uid"))
                .and_then(Value::as_str)
            {
                lock(&self.api.first_added)
                    .entry(uid.to_string())
                    .or_insert_with(Instant::now);
            }
        }
        Ok(())
    }
}

/// Streams events for `plan` until the timeout (Ok) or until the writer fails, the event budget
/// `max_events` is spent, or `alive` turns false (Err). The caller ends the chunked body on Ok.
pub fn stream<W: Write>(
    api: &Api,
    plan: &WatchPlan,
    w: &mut W,
    max_events: Option<usize>,
    alive: &dyn Fn() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + plan.timeout;
    let mut tx = Sender {
        api,
        w,
        sent: 0,
        max: max_events,
    };
    let mut last_rv = match plan.from_rv {
        Some(rv) => rv,
        None => {
            let st = lock(&api.store);
            let rv = st.rv();
            let items: Vec<Value> = st
                .list(plan.kind, plan.ns.as_deref())
                .into_iter()
                .filter(|o| visible(plan, o))
                .cloned()
                .collect();
            drop(st);
            for o in &items {
                tx.send("ADDED", o)?;
            }
            if plan.send_initial {
                tx.send("BOOKMARK", &bookmark(plan, rv, true))?;
            }
            rv
        }
    };
    let interval = *lock(&api.bookmark_interval);
    let mut next_bookmark = Instant::now() + interval;
    loop {
        if !alive() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "server went down",
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let st = lock(&api.store);
        let batch: Vec<(&'static str, Value)> = match st.events_since(plan.kind, last_rv) {
            Err(()) => {
                let msg = format!(
                    "too old resource version: {last_rv} ({})",
                    st.compacted_rv()
                );
                drop(st);
                tx.send("ERROR", &status(410, "Expired", &msg, None))?;
                return Ok(());
            }
            Ok(events) if !events.is_empty() => {
                last_rv = events.last().map_or(last_rv, |e| e.rv);
                events
                    .iter()
                    .filter_map(|e| {
                        let now_in = visible(plan, &e.object);
                        let was_in = e.prev.as_ref().is_some_and(|p| visible(plan, p));
                        let typ = match (e.typ, was_in, now_in) {
                            (EventType::Added, _, true) => "ADDED",
                            (EventType::Modified, true, true) => "MODIFIED",
                            (EventType::Modified, false, true) => "ADDED",
                            (EventType::Modified, true, false) => "DELETED",
                            (EventType::Deleted, true, _) => "DELETED",
                            _ => return None,
                        };
                        Some((typ, e.object.clone()))
                    })
                    .collect()
            }
            Ok(_) => {
                if plan.bookmarks && now >= next_bookmark {
                    // No events of ours up to the current RV: the watcher is at it.
                    last_rv = last_rv.max(st.rv());
                    drop(st);
                    tx.send("BOOKMARK", &bookmark(plan, last_rv, false))?;
                    next_bookmark = now + interval;
                    continue;
                }
                let mut until = deadline.min(now + POLL);
                if plan.bookmarks {
                    until = until.min(next_bookmark);
                }
                let wait = until.saturating_duration_since(now);
                let _ = api.changed.wait_timeout(st, wait);
                continue;
            }
        };
        drop(st);
        for (typ, obj) in &batch {
            tx.send(typ, obj)?;
        }
    }
}
