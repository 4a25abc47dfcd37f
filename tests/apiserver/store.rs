//! The object store of the test API server: objects by (resource, namespace, name), one global
//! monotonically increasing resourceVersion, and a bounded history of watch events with a
//! compaction point (a watch from before it is "too old": 410 Gone).
//!
//! It owns storage and event history only: no HTTP, no authorization, no verb semantics
//! (graceful pod deletion, status subresources) — those live in `handler`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// One served resource type.
#[derive(Debug)]
pub struct Kind {
    /// Plural resource name in URLs.
    pub resource: &'static str,
    /// API group ("" for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind of the objects.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the type has a status subresource (main-resource writes keep the old status).
    pub has_status: bool,
}

impl Kind {
    /// `apiVersion` of the objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every resource the server serves; index into this is a `KindId`.
pub const KINDS: &[Kind] = &[
    Kind {
        resource: "pods",
        group: "",
        version: "v1",
        kind: "Pod",
        namespaced: true,
        has_status: true,
    },
    Kind {
        resource: "nodes",
        group: "",
        version: "v1",
        kind: "Node",
        namespaced: false,
        has_status: true,
    },
    Kind {
        resource: "events",
        group: "",
        version: "v1",
        kind: "Event",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "configmaps",
        group: "",
        version: "v1",
        kind: "ConfigMap",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "secrets",
        group: "",
        version: "v1",
        kind: "Secret",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "serviceaccounts",
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "services",
        group: "",
        version: "v1",
        kind: "Service",
        namespaced: true,
        has_status: true,
    },
    Kind {
        resource: "persistentvolumeclaims",
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        has_status: true,
    },
    Kind {
        resource: "namespaces",
        group: "",
        version: "v1",
        kind: "Namespace",
        namespaced: false,
        has_status: true,
    },
    Kind {
        resource: "leases",
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "events",
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "endpointslices",
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        namespaced: true,
        has_status: false,
    },
    Kind {
        resource: "certificatesigningrequests",
        group: "certificates.k8s.io",
        version: "v1",
        kind: "CertificateSigningRequest",
        namespaced: false,
        has_status: true,
    },
];

/// Index into `KINDS`.
pub type KindId = usize;

/// Finds a served kind by URL coordinates.
pub fn find_kind(group: &str, version: &str, resource: &str) -> Option<KindId> {
    KINDS
        .iter()
        .position(|k| k.group == group && k.version == version && k.resource == resource)
}

/// The kind of a resource by its plural name and group.
pub fn kind_id(group: &str, resource: &str) -> KindId {
    KINDS
        .iter()
        .position(|k| k.group == group && k.resource == resource)
        .unwrap_or(0)
}

/// Kind at an index (the pod kind for an out-of-range index, which cannot come from outside).
pub fn kind(id: KindId) -> &'static Kind {
    KINDS.get(id).unwrap_or(&KINDS[0])
}

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the history.
#[derive(Clone, Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource type.
    pub kind: KindId,
    /// What happened.
    pub typ: EventType,
    /// The object after the change (for DELETED: as it was, with the deletion's RV).
    pub object: Value,
    /// The object before the change, for selector transitions.
    pub prev: Option<Value>,
}

/// Key of one object.
pub type ObjKey = (KindId, String, String);

/// Objects, the RV counter and the event history.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    history: VecDeque<Event>,
    history_limit: usize,
    compacted_rv: u64,
    uid_counter: u64,
}

impl Store {
    /// An empty store keeping at most `history_limit` events.
    pub fn new(history_limit: usize) -> Store {
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            uid_counter: 0,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Watches from an RV below this are too old.
    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    /// Drops all history: every RV older than the current one becomes too old.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Changes how many events are kept.
    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        self.trim();
    }

    fn trim(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted_rv = e.rv;
            }
        }
    }

    /// A fresh UID (UUID-shaped).
    pub fn new_uid(&mut self) -> String {
        self.uid_counter += 1;
        let n = self.uid_counter;
        let t = now_unix_nanos() as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (t >> 16) as u32,
            (t & 0xffff) as u16,
            (n >> 48) & 0xfff,
            (n >> 36) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }

    /// One object.
    pub fn get(&self, kind: KindId, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, ns.to_string(), name.to_string()))
    }

    /// All objects of a kind, optionally in one namespace, in key order.
    pub fn list(&self, kind: KindId, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .filter(|((_, n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .collect()
    }

    /// Stores `obj` (new or replacing), stamping the next RV; returns the stored object.
    pub fn put(&mut self, kind: KindId, ns: &str, name: &str, mut obj: Value) -> Value {
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        let key = (kind, ns.to_string(), name.to_string());
        let prev = self.objects.insert(key, obj.clone());
        let typ = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv: self.rv,
            kind,
            typ,
            object: obj.clone(),
            prev,
        });
        obj
    }

    /// Removes an object; returns it as last seen (with the deletion RV).
    pub fn remove(&mut self, kind: KindId, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .remove(&(kind, ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let prev = obj.clone();
        set_rv(&mut obj, self.rv);
        self.record(Event {
            rv: self.rv,
            kind,
            typ: EventType::Deleted,
            object: obj.clone(),
            prev: Some(prev),
        });
        Some(obj)
    }

    fn record(&mut self, e: Event) {
        self.history.push_back(e);
        self.trim();
    }

    /// Events of `kind` newer than `after`. Err(()) if `after` is older than the history.
    pub fn events_since(&self, kind: KindId, after: u64) -> Result<Vec<&Event>, ()> {
        if after < self.compacted_rv {
            return Err(());
        }
        // History is in RV order: skip the seen part without scanning it (many watchers
        // wake on every write).
        let start = self.history.partition_point(|e| e.rv <= after);
        Ok(self
            .history
            .range(start..)
            .filter(|e| e.kind == kind)
            .collect())
    }
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(m) = obj.as_object_mut() {
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp, second precision, as Kubernetes writes metav1.Time.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Now as an RFC 3339 timestamp.
pub fn now_rfc3339(offset_secs: i64) -> String {
    rfc3339((now_unix_nanos() / 1_000_000_000) as i64 + offset_secs)
}

/// A string field by dotted path (e.g. `spec.nodeName`).
pub fn field<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}

/// A string at a path of keys.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(obj, |v, k| v.get(k))?.as_str()
}

/// One requirement of a field or label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// key = value (or ==).
    Eq(String, String),
    /// key != value.
    Ne(String, String),
    /// key exists (labels only).
    Exists(String),
    /// !key (labels only).
    NotExists(String),
    /// key in (a,b).
    In(String, Vec<String>),
    /// key notin (a,b).
    NotIn(String, Vec<String>),
}

/// Parses a selector (`a=b,c!=d,e in (x,y),f,!g`). Err on syntax the server does not know.
pub fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or(format!("bad set in {p:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        if let Some((k, v)) = p.split_once("!=") {
            out.push(Requirement::Ne(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once("==") {
            out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once('=') {
            out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            out.push(Requirement::NotIn(k.trim().into(), set(rest)?));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            out.push(Requirement::In(k.trim().into(), set(rest)?));
        } else if let Some(k) = p.strip_prefix('!') {
            out.push(Requirement::NotExists(k.trim().into()));
        } else if p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            out.push(Requirement::Exists(p.to_string()));
        } else {
            return Err(format!("unable to parse requirement {p:?}"));
        }
    }
    Ok(out)
}

/// Whether a value lookup satisfies every requirement.
pub fn matches(reqs: &[Requirement], lookup: impl Fn(&str) -> Option<String>) -> bool {
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
        Requirement::Ne(k, v) => lookup(k).as_deref() != Some(v.as_str()),
        Requirement::Exists(k) => lookup(k).is_some(),
        Requirement::NotExists(k) => lookup(k).is_none(),
        Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
        Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
    })
}

/// Field and label selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// fieldSelector requirements (missing string fields compare as "").
    pub fields: Vec<Requirement>,
    /// labelSelector requirements.
    pub labels: Vec<Requirement>,
}

impl Selector {
    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let field_ok = matches(&self.fields, |k| {
            Some(match field(obj, k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
        });
        field_ok
            && matches(&self.labels, |k| {
                obj.get("metadata")?
                    .get("labels")?
                    .get(k)?
                    .as_str()
                    .map(str::to_string)
            })
    }

    /// The value of an equality field requirement, if present (for authorization).
    pub fn field_eq(&self, key: &str) -> Option<&str> {
        self.fields.iter().find_map(|r| match r {
            Requirement::Eq(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn selectors() {
        let s = Selector {
            fields: parse_selector("spec.nodeName=n1").unwrap(),
            labels: parse_selector("app=web,tier in (a,b),!canary").unwrap(),
        };
        let pod = json!({"metadata": {"labels": {"app": "web", "tier": "a"}}, "spec": {"nodeName": "n1"}});
        assert!(s.matches(&pod));
        let other = json!({"metadata": {"labels": {"app": "web", "tier": "a", "canary": "1"}}, "spec": {"nodeName": "n1"}});
        assert!(!s.matches(&other));
    }

    #[test]
    fn history_compaction() {
        let mut s = Store::new(2);
        for i in 0..4 {
            s.put(0, "ns", &format!("p{i}"), json!({}));
        }
        assert!(s.events_since(0, 2).is_err());
        assert_eq!(s.events_since(0, 3).unwrap().len(), 2);
        s.compact();
        assert!(s.events_since(0, 4).is_err());
        assert!(s.events_since(0, s.rv()).unwrap().is_empty());
    }
}
