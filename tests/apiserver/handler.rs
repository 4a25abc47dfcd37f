//! Verb semantics of the test API server: routing of Kubernetes URLs, GET/LIST/CREATE/UPDATE/
//! PATCH/DELETE with the behaviour a node agent depends on (optimistic concurrency, graceful pod
//! deletion, status subresources, ServiceAccount token injection, CSR approval, TokenRequest),
//! and `Status` error objects.
//!
//! It sees requests as (method, path, query, body) and a `User`; sockets, TLS, faults and the
//! streaming part of watches live in `server` and `watch`.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::authz::{self, Attrs, User, MIRROR_ANNOTATION};
use super::patch;
use super::pki::{self, Pki};
use super::store::{self, kind, parse_selector, KindId, Selector, Store};

/// Signer whose CSRs the server validates and signs.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// How CertificateSigningRequests get approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrApproval {
    /// Like kube-controller-manager's csrapproving: bootstrap users' and nodes' own CSRs for
    /// the kubelet client signer are approved at once.
    Auto,
    /// Only when a test calls `approve_csr`.
    Manual,
}

/// How a watch from a compacted resourceVersion is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiredMode {
    /// HTTP 200 then one ERROR event with a 410 Status (what watch-cache answers).
    ErrorEvent,
    /// HTTP 410 with a Status body.
    Http410,
}

/// API state shared by all connections: the store and what changes its behaviour.
pub struct Api {
    /// Objects and history.
    pub store: Mutex<Store>,
    /// Signalled after every write (watchers wait on it).
    pub changed: Condvar,
    /// Signs approved CSRs.
    pub pki: Arc<Pki>,
    /// CSR approval policy.
    pub csr_approval: Mutex<CsrApproval>,
    /// 410 style.
    pub expired: Mutex<ExpiredMode>,
    /// Bearer tokens → users (static tokens, bootstrap tokens, issued SA tokens).
    pub tokens: Mutex<HashMap<String, User>>,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Mutex<Duration>,
    /// When an ADDED event for each object UID was first written to a watcher (what "the
    /// watch delivered it" means to a benchmark).
    pub first_added: Mutex<HashMap<String, Instant>>,
    /// Watch length when the client gives no timeoutSeconds.
    pub default_watch_timeout: Duration,
    /// Counter for generated names and token signatures.
    pub rand: Mutex<u64>,
}

/// Locks a mutex, surviving a panicked holder (the data stays usable for tests).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Request headers the API layer looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMeta<'a> {
    /// Content-Type (selects the patch flavour).
    pub content_type: &'a str,
    /// User-Agent (names the field manager, as upstream derives it).
    pub user_agent: &'a str,
}

/// The field manager: `?fieldManager=` or the User-Agent's program name.
fn field_manager(q: &[(String, String)], user_agent: &str) -> String {
    if let Some(m) = query(q, "fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prog = user_agent.split('/').next().unwrap_or("").trim();
    if prog.is_empty() {
        "unknown".to_string()
    } else {
        prog.chars().take(128).collect()
    }
}

/// Records the writer in metadata.managedFields as a real server does on every write: one
/// entry per manager, operation and subresource, whose FieldsV1 set is the union of what that
/// manager owned before and the fields this write changed (`old` is None on create: every
/// field). Entry sizes matter: they are most of a small object's bytes on the wire.
fn stamp_managed(obj: &mut Value, old: Option<&Value>, manager: &str, operation: &str, sub: &str) {
    let api_version = obj.get("apiVersion").cloned().unwrap_or(Value::Null);
    let mut changed = Map::new();
    changed_fields(old.unwrap_or(&Value::Null), obj, &mut changed, true);
    let mut entries: Vec<Value> = meta(obj)
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut fields = Map::new();
    entries.retain(|e| {
        let same = e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some(operation)
            && e.get("subresource").and_then(Value::as_str).unwrap_or("") == sub;
        if same {
            if let Some(prev) = e.get("fieldsV1").and_then(Value::as_object) {
                fields = prev.clone();
            }
        }
        !same
    });
    if changed.is_empty() && fields.is_empty() {
        meta_mut(obj).insert("managedFields".into(), Value::Array(entries));
        return;
    }
    merge_fields(&mut fields, changed);
    let mut e = json!({"manager": manager, "operation": operation, "apiVersion": api_version,
        "time": store::now_rfc3339(0), "fieldsType": "FieldsV1", "fieldsV1": Value::Object(fields)});
    if !sub.is_empty() {
        e["subresource"] = json!(sub);
    }
    entries.push(e);
    meta_mut(obj).insert("managedFields".into(), Value::Array(entries));
}

/// FieldsV1 of what differs between `old` and `new`: `f:key` per object member, `k:{...}` per
/// list item keyed by name or uid, `.` for a member that is itself owned as a whole.
fn changed_fields(old: &Value, new: &Value, out: &mut Map<String, Value>, top: bool) {
    let Some(n) = new.as_object() else {
        return;
    };
    for (k, v) in n {
        if top && matches!(k.as_str(), "apiVersion" | "kind") {
            continue;
        }
        if top && k == "metadata" {
            let mut m = Map::new();
            let om = old.get("metadata").unwrap_or(&Value::Null);
            if let Some(vm) = v.as_object() {
                for (mk, mv) in vm {
                    if matches!(
                        mk.as_str(),
                        "name"
                            | "namespace"
                            | "uid"
                            | "resourceVersion"
                            | "creationTimestamp"
                            | "generation"
                            | "managedFields"
                            | "selfLink"
                    ) || om.get(mk) == Some(mv)
                    {
                        continue;
                    }
                    m.insert(format!("f:{mk}"), owned(om.get(mk), mv));
                }
            }
            if !m.is_empty() {
                out.insert("f:metadata".into(), Value::Object(m));
            }
            continue;
        }
        let o = old.get(k);
        if o == Some(v) {
            continue;
        }
        out.insert(format!("f:{k}"), owned(o, v));
    }
}

fn owned(old: Option<&Value>, new: &Value) -> Value {
    match new {
        Value::Object(_) => {
            let mut m = Map::new();
            changed_fields(old.unwrap_or(&Value::Null), new, &mut m, false);
            if old.is_none() {
                m.insert(".".into(), json!({}));
            }
            Value::Object(m)
        }
        Value::Array(items)
            if items
                .iter()
                .all(|i| i.get("name").is_some() || i.get("uid").is_some())
                && !items.is_empty() =>
        {
            let mut m = Map::new();
            m.insert(".".into(), json!({}));
            for i in items {
                let key = match (i.get("uid"), i.get("name")) {
                    (Some(u), _) => json!({"uid": u}),
                    (None, Some(n)) => json!({"name": n}),
                    _ => continue,
                };
                let mut inner = Map::new();
                changed_fields(&Value::Null, i, &mut inner, false);
                inner.insert(".".into(), json!({}));
                m.insert(format!("k:{key}"), Value::Object(inner));
            }
            Value::Object(m)
        }
        _ => json!({}),
    }
}

fn merge_fields(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge_fields(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// A write that sets metadata.managedFields to a list holding one empty entry resets them
/// (documented server-side-apply behaviour): the old entries go, the writer owns what it
/// changed in this request.
fn asks_managed_reset(body: &Value) -> bool {
    meta(body)
        .get("managedFields")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()))
}

/// What to stream for a watch request.
#[derive(Clone, Debug)]
pub struct WatchPlan {
    /// Resource type.
    pub kind: KindId,
    /// Namespace, or None for all.
    pub ns: Option<String>,
    /// Selectors.
    pub selector: Selector,
    /// Start after this RV; None means "send current state first" (RV "" or "0").
    pub from_rv: Option<u64>,
    /// Streaming list: initial ADDED events then the initial-events-end bookmark.
    pub send_initial: bool,
    /// allowWatchBookmarks.
    pub bookmarks: bool,
    /// When the server ends the watch.
    pub timeout: Duration,
}

/// An answer.
#[derive(Debug)]
pub enum Reply {
    /// A JSON (or, for non-resource endpoints, text) body with a status code.
    Json {
        /// HTTP status.
        code: u16,
        /// Body.
        body: Value,
    },
    /// Plain text (health endpoints).
    Text(u16, String),
    /// Stream watch events.
    Watch(WatchPlan),
}

/// A Kubernetes `Status` failure.
pub fn status(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<(&str, &str, &str)>,
) -> Value {
    let mut v = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if let (Some((name, group, kind)), Some(m)) = (details, v.as_object_mut()) {
        let mut d = json!({"name": name, "kind": kind});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        m.insert("details".into(), d);
    }
    v
}

fn fail(code: u16, reason: &str, message: impl AsRef<str>) -> Reply {
    Reply::Json {
        code,
        body: status(code, reason, message.as_ref(), None),
    }
}

fn ok(code: u16, body: Value) -> Reply {
    Reply::Json { code, body }
}

/// Where a resource request goes.
#[derive(Clone, Debug)]
pub struct Route {
    /// get, list, watch, create, update, patch, delete.
    pub verb: &'static str,
    /// Resource type.
    pub kind: KindId,
    /// Namespace ("" for cluster scope / all namespaces).
    pub ns: String,
    /// Object name ("" for collections).
    pub name: String,
    /// Subresource ("" for the main resource).
    pub sub: String,
}

impl Route {
    /// "pods", "pods/status", "leases" ... for counters.
    pub fn resource_label(&self) -> String {
        let k = kind(self.kind);
        let base = if k.group.is_empty() {
            k.resource.to_string()
        } else {
            format!("{}.{}", k.resource, k.group)
        };
        if self.sub.is_empty() {
            base
        } else {
            format!("{base}/{}", self.sub)
        }
    }
}

/// Request target.
#[derive(Clone, Debug)]
pub enum Target {
    /// A resource URL.
    Resource(Route),
    /// /version, /healthz, /api, /apis ...
    NonResource(String),
}

fn query<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1") | Some("true") | Some("True"))
}

/// Maps method + path to a route. Err is the reply to send (404/405).
pub fn route(method: &str, path: &str, q: &[(String, String)]) -> Result<Target, Reply> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(Target::NonResource(path.to_string())),
    };
    if rest.is_empty() {
        return Ok(Target::NonResource(path.to_string()));
    }
    let (ns, rest) = match rest {
        ["namespaces", ns, r, more @ ..] => (*ns, {
            let mut v = vec![*r];
            v.extend_from_slice(more);
            v
        }),
        r => ("", r.to_vec()),
    };
    let (resource, name, sub) = match rest.as_slice() {
        [r] => (*r, "", ""),
        [r, n] => (*r, *n, ""),
        [r, n, s] => (*r, *n, *s),
        _ => {
            return Err(fail(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    };
    let Some(kid) = store::find_kind(group, version, resource) else {
        return Err(fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let k = kind(kid);
    if !k.namespaced && !ns.is_empty() {
        return Err(fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if k.namespaced && ns.is_empty() && !name.is_empty() {
        return Err(fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let sub_ok = match sub {
        "" => true,
        "status" => k.has_status,
        "token" => k.resource == "serviceaccounts",
        "approval" => k.resource == "certificatesigningrequests",
        "binding" => k.resource == "pods",
        _ => false,
    };
    if !sub_ok {
        return Err(fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let verb = match (method, name.is_empty(), sub) {
        ("GET", true, _) if truthy(query(q, "watch")) => "watch",
        ("GET", true, _) => "list",
        ("GET", false, "token" | "binding") => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ))
        }
        ("GET", false, _) => "get",
        ("POST", true, _) => "create",
        ("POST", false, "token") | ("POST", false, "binding") => "create",
        ("PUT", false, "token" | "binding")
        | ("PATCH", false, "token" | "binding")
        | ("DELETE", false, "token" | "binding") => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ))
        }
        ("PUT", false, _) => "update",
        ("PATCH", false, _) => "patch",
        ("DELETE", false, "") => "delete",
        _ => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    Ok(Target::Resource(Route {
        verb,
        kind: kid,
        ns: ns.to_string(),
        name: name.to_string(),
        sub: sub.to_string(),
    }))
}

fn forbidden(user: &User, r: &Route, reason: &str) -> Reply {
    let k = kind(r.kind);
    let res = if r.sub.is_empty() {
        k.resource.to_string()
    } else {
        format!("{}/{}", k.resource, r.sub)
    };
    let subject = if r.name.is_empty() {
        res.clone()
    } else {
        format!("{res} {:?}", r.name)
    };
    let scope = if r.ns.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", r.ns)
    };
    let msg = format!(
        "{subject} is forbidden: User {:?} cannot {} resource {:?} in API group {:?} {scope}: {reason}",
        user.name, r.verb, res, k.group
    );
    ok(
        403,
        status(403, "Forbidden", &msg, Some((&r.name, k.group, k.resource))),
    )
}

fn not_found(r: &Route) -> Reply {
    let k = kind(r.kind);
    let msg = format!("{} {:?} not found", k.resource, r.name);
    ok(
        404,
        status(404, "NotFound", &msg, Some((&r.name, k.group, k.resource))),
    )
}

fn conflict(r: &Route, why: &str) -> Reply {
    let k = kind(r.kind);
    let msg = format!(
        "Operation cannot be fulfilled on {} {:?}: {why}",
        k.resource, r.name
    );
    ok(
        409,
        status(409, "Conflict", &msg, Some((&r.name, k.group, k.resource))),
    )
}

fn invalid(r: &Route, name: &str, why: &str) -> Reply {
    let k = kind(r.kind);
    let msg = format!("{} {:?} is invalid: {why}", k.kind, name);
    ok(
        422,
        status(422, "Invalid", &msg, Some((name, k.group, k.kind))),
    )
}

const CONFLICT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn meta(v: &Value) -> &Value {
    v.get("metadata").unwrap_or(&Value::Null)
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    // Both levels were just made objects, so the fallback is never taken.
    match v {
        Value::Object(o) => match o.entry("metadata").or_insert_with(|| json!({})) {
            Value::Object(m) => m,
            other => {
                *other = Value::Object(Map::new());
                other.as_object_mut().expect("just assigned an object")
            }
        },
        _ => unreachable!("value was just made an object"),
    }
}

fn rv_of(v: &Value) -> Option<&str> {
    meta(v)
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Api {
    fn next_rand(&self) -> u64 {
        let mut g = lock(&self.rand);
        *g ^= *g << 13;
        *g ^= *g >> 7;
        *g ^= *g << 17;
        *g
    }

    fn suffix(&self, n: usize) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x = self.next_rand();
        (0..n)
            .map(|_| {
                let c = ALPHA
                    .get((x % ALPHA.len() as u64) as usize)
                    .copied()
                    .unwrap_or(b'x');
                x /= ALPHA.len() as u64;
                char::from(c)
            })
            .collect()
    }

    /// Serves one request for `user`.
    pub fn handle(
        &self,
        user: &User,
        method: &str,
        path: &str,
        q: &[(String, String)],
        hdr: &RequestMeta<'_>,
        body: &[u8],
    ) -> Reply {
        match route(method, path, q) {
            Err(reply) => reply,
            Ok(Target::NonResource(p)) => non_resource(&p),
            Ok(Target::Resource(r)) => self.handle_route(user, &r, q, hdr, body),
        }
    }

    /// Serves a routed resource request.
    pub fn handle_route(
        &self,
        user: &User,
        r: &Route,
        q: &[(String, String)],
        hdr: &RequestMeta<'_>,
        body: &[u8],
    ) -> Reply {
        let content_type = hdr.content_type;
        let manager = field_manager(q, hdr.user_agent);
        let manager = manager.as_str();
        let selector = match (
            parse_selector(query(q, "fieldSelector").unwrap_or("")),
            parse_selector(query(q, "labelSelector").unwrap_or("")),
        ) {
            (Ok(fields), Ok(labels)) => Selector { fields, labels },
            (Err(e), _) | (_, Err(e)) => return fail(400, "BadRequest", e),
        };
        let ct = content_type.split(';').next().unwrap_or("").trim();
        if matches!(r.verb, "create" | "update") && !ct.is_empty() && !ct.ends_with("json") {
            return fail(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json (got {ct:?}); this test server speaks no protobuf"),
            );
        }
        let parsed_body: Option<Value> = match r.verb {
            "create" | "update" | "patch" => match serde_json::from_slice(body) {
                Ok(v) => Some(v),
                Err(e) => {
                    return fail(
                        400,
                        "BadRequest",
                        format!("error decoding request body: {e}"),
                    )
                }
            },
            "delete" if !body.is_empty() => match serde_json::from_slice(body) {
                Ok(v) => Some(v),
                Err(e) => {
                    return fail(
                        400,
                        "BadRequest",
                        format!("error decoding DeleteOptions: {e}"),
                    )
                }
            },
            _ => None,
        };
        let mut st = lock(&self.store);
        let attrs = Attrs {
            verb: r.verb,
            kind: r.kind,
            ns: &r.ns,
            name: &r.name,
            sub: &r.sub,
            selector: &selector,
            body: parsed_body.as_ref(),
        };
        if user.name == "system:anonymous" {
            drop(st);
            return fail(401, "Unauthorized", "Unauthorized");
        }
        if let Err(why) = authz::authorize(user, &attrs, &st) {
            return forbidden(user, r, &why);
        }
        let before = st.rv();
        let reply = match r.verb {
            "get" => match st.get(r.kind, &r.ns, &r.name) {
                Some(o) => ok(200, o.clone()),
                None => not_found(r),
            },
            "list" => list(&st, r, &selector, q),
            "watch" => watch_plan(self, &st, r, selector, q),
            "create" if r.sub == "token" => {
                self.token_request(&mut st, r, parsed_body.unwrap_or(Value::Null))
            }
            "create" if r.sub == "binding" => bind(&mut st, r, &parsed_body.unwrap_or(Value::Null)),
            "create" => self.create(
                &mut st,
                user,
                r,
                manager,
                parsed_body.unwrap_or(Value::Null),
            ),
            "update" => self.update(&mut st, manager, r, parsed_body.unwrap_or(Value::Null)),
            "patch" => self.patch(
                &mut st,
                manager,
                r,
                content_type,
                &parsed_body.unwrap_or(Value::Null),
            ),
            "delete" => self.delete(&mut st, r, parsed_body.as_ref(), q),
            _ => fail(405, "MethodNotAllowed", "unsupported verb"),
        };
        let changed = st.rv() != before;
        drop(st);
        if changed {
            self.changed.notify_all();
        }
        reply
    }

    fn create(
        &self,
        st: &mut Store,
        user: &User,
        r: &Route,
        manager: &str,
        mut obj: Value,
    ) -> Reply {
        let k = kind(r.kind);
        if !obj.is_object() {
            return fail(400, "BadRequest", "request body must be a JSON object");
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            if av != k.api_version() {
                return fail(400, "BadRequest", format!("the API version in the data ({av}) does not match the expected API version ({})", k.api_version()));
            }
        }
        if let Some(kd) = obj.get("kind").and_then(Value::as_str) {
            if kd != k.kind {
                return fail(
                    400,
                    "BadRequest",
                    format!(
                        "the kind in the data ({kd}) does not match the expected kind ({})",
                        k.kind
                    ),
                );
            }
        }
        if let Some(ns) = meta(&obj).get("namespace").and_then(Value::as_str) {
            if k.namespaced && !ns.is_empty() && ns != r.ns {
                return fail(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
            }
        }
        let mut name = meta(&obj)
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match meta(&obj).get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => name = format!("{g}{}", self.suffix(5)),
                _ => {
                    return invalid(
                        r,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    )
                }
            }
        }
        if st.get(r.kind, &r.ns, &name).is_some() {
            let msg = format!("{} {:?} already exists", k.resource, name);
            return ok(
                409,
                status(
                    409,
                    "AlreadyExists",
                    &msg,
                    Some((&name, k.group, k.resource)),
                ),
            );
        }
        obj["apiVersion"] = json!(k.api_version());
        obj["kind"] = json!(k.kind);
        let uid = st.new_uid();
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if k.namespaced {
            m.insert("namespace".into(), json!(r.ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(store::now_rfc3339(0)));
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
        ] {
            m.remove(f);
        }
        let route = Route {
            name: name.clone(),
            ..r.clone()
        };
        match (k.group, k.resource) {
            ("", "pods") => self.prepare_pod(&mut obj),
            ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
            ("certificates.k8s.io", "certificatesigningrequests") => {
                if let Err(reply) = validate_csr(&route, &mut obj, user) {
                    return reply;
                }
            }
            _ => {}
        }
        meta_mut(&mut obj).remove("managedFields");
        stamp_managed(&mut obj, None, manager, "Update", "");
        let stored = st.put(r.kind, &r.ns, &name, obj);
        if k.resource == "certificatesigningrequests"
            && *lock(&self.csr_approval) == CsrApproval::Auto
            && auto_approvable(&stored)
        {
            let _ = self.approve_locked(st, &name, true);
            return ok(201, stored);
        }
        ok(201, stored)
    }

    /// Defaults and ServiceAccount admission for a new pod.
    fn prepare_pod(&self, pod: &mut Value) {
        let is_mirror = meta(pod)
            .get("annotations")
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .is_some();
        let gen = meta(pod).get("generation").is_none();
        if gen {
            meta_mut(pod).insert("generation".into(), json!(1));
        }
        pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        if !pod.get("spec").is_some_and(Value::is_object) {
            pod["spec"] = json!({});
        }
        let spec = &mut pod["spec"];
        let defaults = [
            ("restartPolicy", json!("Always")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("enableServiceLinks", json!(true)),
        ];
        for (k, v) in defaults {
            if spec.get(k).is_none() {
                spec[k] = v;
            }
        }
        if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter(|c| c.is_object()) {
                if c.get("imagePullPolicy").is_none() {
                    let img = c.get("image").and_then(Value::as_str).unwrap_or("");
                    let tag = img
                        .rsplit('/')
                        .next()
                        .and_then(|last| last.split_once(':'))
                        .map(|(_, t)| t);
                    let policy = if img.contains('@') || tag.is_some_and(|t| t != "latest") {
                        "IfNotPresent"
                    } else {
                        "Always"
                    };
                    c["imagePullPolicy"] = json!(policy);
                }
                if c.get("terminationMessagePath").is_none() {
                    c["terminationMessagePath"] = json!("/dev/termination-log");
                    c["terminationMessagePolicy"] = json!("File");
                }
            }
        }
        if is_mirror || spec.get("automountServiceAccountToken") == Some(&json!(false)) {
            return;
        }
        if spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec["serviceAccountName"] = json!("default");
            spec["serviceAccount"] = json!("default");
        }
        const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
        let already = ["containers", "initContainers"].iter().any(|l| {
            spec.get(*l)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("volumeMounts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|m| m.get("mountPath") == Some(&json!(SA_DIR)))
                })
        });
        if already {
            return;
        }
        let vol_name = format!("kube-api-access-{}", self.suffix(5));
        let volume = json!({"name": vol_name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}});
        if !spec.get("volumes").is_some_and(Value::is_array) {
            spec["volumes"] = json!([]);
        }
        if let Some(v) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
            v.push(volume);
        }
        for l in ["containers", "initContainers"] {
            for c in spec
                .get_mut(l)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if !c.is_object() {
                    continue;
                }
                if !c.get("volumeMounts").is_some_and(Value::is_array) {
                    c["volumeMounts"] = json!([]);
                }
                if let Some(m) = c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                    m.push(json!({"name": vol_name, "readOnly": true, "mountPath": SA_DIR}));
                }
            }
        }
    }

    /// Common tail of update and patch: carry over immutable metadata, honour the status
    /// subresource split, skip no-ops, finish pending deletions whose finalizers are gone.
    fn write_update(
        &self,
        st: &mut Store,
        r: &Route,
        manager: &str,
        old: &Value,
        mut new: Value,
    ) -> Reply {
        let k = kind(r.kind);
        if !new.is_object() {
            return fail(400, "BadRequest", "object must be a JSON object");
        }
        let reset_managed = asks_managed_reset(&new);
        if let Some(uid) = meta(&new).get("uid").and_then(Value::as_str) {
            if !uid.is_empty() && Some(uid) != meta(old).get("uid").and_then(Value::as_str) {
                return conflict(
                    r,
                    &format!("Precondition failed: UID in object meta: {uid}"),
                );
            }
        }
        if r.sub.is_empty()
            && k.resource == "pods"
            && k.group.is_empty()
            && !pod_spec_change_allowed(old, &new)
        {
            return invalid(r, &r.name, "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)");
        }
        if r.sub == "status" {
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            new = old.clone();
            new["status"] = status;
        } else if r.sub == "approval" {
            let conds = new
                .get("status")
                .and_then(|s| s.get("conditions"))
                .cloned()
                .unwrap_or(Value::Null);
            new = old.clone();
            new["status"]["conditions"] = conds;
        } else if k.has_status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        new["apiVersion"] = json!(k.api_version());
        new["kind"] = json!(k.kind);
        {
            let om = meta(old).clone();
            let m = meta_mut(&mut new);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
            ] {
                match om.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.insert(
                "resourceVersion".into(),
                om.get("resourceVersion").cloned().unwrap_or(Value::Null),
            );
        }
        if new.get("spec") != old.get("spec") && meta(old).get("generation").is_some() {
            let g = meta(old)
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if reset_managed {
            meta_mut(&mut new).remove("managedFields");
        } else if &new == old {
            return ok(200, old.clone());
        }
        stamp_managed(&mut new, Some(old), manager, "Update", &r.sub);
        let finalizers_gone = meta(&new)
            .get("finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if meta(&new).get("deletionTimestamp").is_some()
            && finalizers_gone
            && !graceful_pending(k.resource, &new)
        {
            st.put(r.kind, &r.ns, &r.name, new);
            let gone = st.remove(r.kind, &r.ns, &r.name).unwrap_or(Value::Null);
            return ok(200, gone);
        }
        let stored = st.put(r.kind, &r.ns, &r.name, new);
        if r.sub == "approval"
            && is_approved(&stored)
            && stored.pointer("/status/certificate").is_none()
        {
            if let Ok(signed) = self.approve_locked(st, &r.name, false) {
                return ok(200, signed);
            }
        }
        ok(200, stored)
    }

    fn update(&self, st: &mut Store, manager: &str, r: &Route, new: Value) -> Reply {
        let Some(old) = st.get(r.kind, &r.ns, &r.name).cloned() else {
            return not_found(r);
        };
        if let Some(n) = meta(&new).get("name").and_then(Value::as_str) {
            if n != r.name {
                return fail(
                    400,
                    "BadRequest",
                    "the name of the object does not match the name on the URL",
                );
            }
        }
        if let Some(rv) = rv_of(&new) {
            if Some(rv) != rv_of(&old) {
                return conflict(r, CONFLICT_MODIFIED);
            }
        }
        self.write_update(st, r, manager, &old, new)
    }

    fn patch(
        &self,
        st: &mut Store,
        manager: &str,
        r: &Route,
        content_type: &str,
        p: &Value,
    ) -> Reply {
        let Some(old) = st.get(r.kind, &r.ns, &r.name).cloned() else {
            return not_found(r);
        };
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let mut new = old.clone();
        match ct {
            "application/merge-patch+json" => patch::merge_patch(&mut new, p),
            "application/strategic-merge-patch+json" => patch::strategic_merge_patch(&mut new, p),
            "application/json-patch+json" => {
                if let Err(e) = patch::json_patch(&mut new, p) {
                    return ok(422, status(422, "Invalid", &format!("the server rejected our request due to an error in our request: {e}"), None));
                }
            }
            other => {
                return fail(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"))
            }
        }
        if ct != "application/json-patch+json" {
            if let Some(rv) = p
                .get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .and_then(Value::as_str)
            {
                if Some(rv) != rv_of(&old) {
                    return conflict(r, CONFLICT_MODIFIED);
                }
            }
        }
        self.write_update(st, r, manager, &old, new)
    }

    fn delete(
        &self,
        st: &mut Store,
        r: &Route,
        opts: Option<&Value>,
        q: &[(String, String)],
    ) -> Reply {
        let k = kind(r.kind);
        let Some(mut obj) = st.get(r.kind, &r.ns, &r.name).cloned() else {
            return not_found(r);
        };
        let opts = opts.cloned().unwrap_or(Value::Null);
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str) {
            let have = meta(&obj).get("uid").and_then(Value::as_str).unwrap_or("");
            if uid != have {
                return conflict(r, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"));
            }
        }
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            let have = rv_of(&obj).unwrap_or("");
            if rv != have {
                return conflict(r, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"));
            }
        }
        let grace_opt = opts
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| query(q, "gracePeriodSeconds").and_then(|g| g.parse().ok()));
        let has_finalizers = meta(&obj)
            .get("finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if k.resource == "pods" && k.group.is_empty() {
            let bound = !store::str_at(&obj, &["spec", "nodeName"])
                .unwrap_or("")
                .is_empty();
            let default_grace = obj
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            let mut grace = grace_opt.unwrap_or(default_grace).max(0);
            let terminal = matches!(
                store::str_at(&obj, &["status", "phase"]),
                Some("Succeeded" | "Failed")
            );
            if !bound || terminal {
                grace = 0;
            }
            if grace > 0 {
                let current = meta(&obj)
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if current.is_some_and(|c| c <= grace) {
                    return ok(200, obj);
                }
                let m = meta_mut(&mut obj);
                m.insert("deletionTimestamp".into(), json!(store::now_rfc3339(grace)));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                m.insert("generation".into(), json!(g + 1));
                return ok(200, st.put(r.kind, &r.ns, &r.name, obj));
            }
            if has_finalizers {
                let m = meta_mut(&mut obj);
                m.entry("deletionTimestamp")
                    .or_insert_with(|| json!(store::now_rfc3339(0)));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                return ok(200, st.put(r.kind, &r.ns, &r.name, obj));
            }
            return ok(
                200,
                st.remove(r.kind, &r.ns, &r.name).unwrap_or(Value::Null),
            );
        }
        if has_finalizers {
            if meta(&obj).get("deletionTimestamp").is_none() {
                let m = meta_mut(&mut obj);
                m.insert("deletionTimestamp".into(), json!(store::now_rfc3339(0)));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                return ok(200, st.put(r.kind, &r.ns, &r.name, obj));
            }
            return ok(200, obj);
        }
        st.remove(r.kind, &r.ns, &r.name);
        let uid = meta(&obj).get("uid").cloned().unwrap_or(Value::Null);
        let mut d = json!({"name": r.name, "kind": k.resource, "uid": uid});
        if !k.group.is_empty() {
            d["group"] = json!(k.group);
        }
        ok(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}),
        )
    }

    fn token_request(&self, st: &mut Store, r: &Route, req: Value) -> Reply {
        let sa_kind = r.kind;
        let Some(sa) = st.get(sa_kind, &r.ns, &r.name).cloned() else {
            return not_found(r);
        };
        let exp = req
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(3600);
        if exp < 600 {
            return ok(422, status(422, "Invalid", "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes", None));
        }
        let audiences = req
            .pointer("/spec/audiences")
            .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
            .cloned()
            .unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"]));
        let bound = req
            .pointer("/spec/boundObjectRef")
            .cloned()
            .filter(|b| !b.is_null());
        let mut claims_k8s = json!({
            "namespace": r.ns,
            "serviceaccount": {"name": r.name, "uid": meta(&sa).get("uid").cloned().unwrap_or(Value::Null)},
        });
        if let Some(b) = &bound {
            let bkind = b.get("kind").and_then(Value::as_str).unwrap_or("");
            let bname = b.get("name").and_then(Value::as_str).unwrap_or("");
            if bkind == "Pod" {
                let pods = store::kind_id("", "pods");
                let Some(pod) = st.get(pods, &r.ns, bname) else {
                    return ok(
                        404,
                        status(
                            404,
                            "NotFound",
                            &format!("pods {bname:?} not found"),
                            Some((bname, "", "pods")),
                        ),
                    );
                };
                let puid = meta(pod).get("uid").and_then(Value::as_str).unwrap_or("");
                if let Some(want) = b.get("uid").and_then(Value::as_str) {
                    if !want.is_empty() && want != puid {
                        return conflict(r, &format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"));
                    }
                }
                claims_k8s["pod"] = json!({"name": bname, "uid": puid});
            }
        }
        let now = (store::now_unix_nanos() / 1_000_000_000) as i64;
        let header = json!({"alg": "RS256", "kid": "tinylet-test"});
        let claims = json!({
            "aud": audiences, "exp": now + exp, "iat": now, "nbf": now,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{}:{}", r.ns, r.name),
            "kubernetes.io": claims_k8s,
        });
        let sig: Vec<u8> = (0..32)
            .flat_map(|_| self.next_rand().to_le_bytes())
            .take(256)
            .collect();
        let token = format!(
            "{}.{}.{}",
            pki::base64url_encode(header.to_string().as_bytes()),
            pki::base64url_encode(claims.to_string().as_bytes()),
            pki::base64url_encode(&sig)
        );
        lock(&self.tokens).insert(
            token.clone(),
            User {
                name: format!("system:serviceaccount:{}:{}", r.ns, r.name),
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{}", r.ns),
                    "system:authenticated".into(),
                ],
            },
        );
        let mut spec = json!({"audiences": audiences, "expirationSeconds": exp});
        if let Some(b) = bound {
            spec["boundObjectRef"] = b;
        }
        ok(
            201,
            json!({
                "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": r.name, "namespace": r.ns, "creationTimestamp": null},
                "spec": spec,
                "status": {"token": token, "expirationTimestamp": store::rfc3339(now + exp)},
            }),
        )
    }

    /// Approves a CSR: Approved condition, then (as the signer would) status.certificate.
    pub fn approve_locked(&self, st: &mut Store, name: &str, auto: bool) -> Result<Value, String> {
        let csrs = store::kind_id("certificates.k8s.io", "certificatesigningrequests");
        let mut csr = st
            .get(csrs, "", name)
            .cloned()
            .ok_or(format!("CSR {name:?} not found"))?;
        if !is_approved(&csr) {
            let (reason, message) = if auto {
                (
                    "AutoApproved",
                    "Auto approving kubelet client certificate after SubjectAccessReview.",
                )
            } else {
                ("TestApproved", "Approved by the test")
            };
            push_condition(&mut csr, "Approved", reason, message);
            csr = st.put(csrs, "", name, csr);
        }
        if csr.pointer("/status/certificate").is_some() {
            return Ok(csr);
        }
        let req = csr
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .unwrap_or("");
        let pem =
            pki::base64_decode(req).ok_or(format!("CSR {name:?}: spec.request is not base64"))?;
        let cert = self
            .pki
            .sign_csr(&pem)
            .map_err(|e| format!("CSR {name:?}: {e}"))?;
        csr["status"]["certificate"] = json!(pki::base64_encode(cert.as_bytes()));
        Ok(st.put(csrs, "", name, csr))
    }

    /// Denies a CSR.
    pub fn deny_locked(&self, st: &mut Store, name: &str) -> Result<Value, String> {
        let csrs = store::kind_id("certificates.k8s.io", "certificatesigningrequests");
        let mut csr = st
            .get(csrs, "", name)
            .cloned()
            .ok_or(format!("CSR {name:?} not found"))?;
        push_condition(&mut csr, "Denied", "TestDenied", "Denied by the test");
        Ok(st.put(csrs, "", name, csr))
    }
}

/// The scheduler's way to place a pod: POST pods/NAME/binding sets spec.nodeName once.
fn bind(st: &mut Store, r: &Route, binding: &Value) -> Reply {
    let Some(node) = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return invalid(r, &r.name, "target.name: Required value");
    };
    let Some(mut pod) = st.get(r.kind, &r.ns, &r.name).cloned() else {
        return not_found(r);
    };
    if let Some(current) = store::str_at(&pod, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
        return conflict(
            r,
            &format!("pod {} is already assigned to node {current:?}", r.name),
        );
    }
    if meta(&pod).get("deletionTimestamp").is_some() {
        return conflict(r, "pod is being deleted, cannot be assigned to a host");
    }
    pod["spec"]["nodeName"] = json!(node);
    let now = store::now_rfc3339(0);
    if !pod["status"].get("conditions").is_some_and(Value::is_array) {
        pod["status"]["conditions"] = json!([]);
    }
    if let Some(c) = pod["status"]["conditions"].as_array_mut() {
        c.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
        c.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
    }
    st.put(r.kind, &r.ns, &r.name, pod);
    ok(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// Pod specs are immutable apart from images, activeDeadlineSeconds, tolerations and the
/// grace period; nodeName only changes through the binding subresource.
fn pod_spec_change_allowed(old: &Value, new: &Value) -> bool {
    let normalize = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(s) = spec.as_object_mut() {
            for f in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                s.remove(f);
            }
            for l in ["containers", "initContainers"] {
                for c in s
                    .get_mut(l)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
        spec
    };
    normalize(old) == normalize(new)
}

fn graceful_pending(resource: &str, obj: &Value) -> bool {
    // A pod with a positive grace period stays until the kubelet deletes it with grace 0.
    resource == "pods"
        && meta(obj)
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
}

fn push_condition(csr: &mut Value, typ: &str, reason: &str, message: &str) {
    if !csr.get("status").is_some_and(Value::is_object) {
        csr["status"] = json!({});
    }
    if !csr["status"].get("conditions").is_some_and(Value::is_array) {
        csr["status"]["conditions"] = json!([]);
    }
    let now = store::now_rfc3339(0);
    if let Some(c) = csr["status"]["conditions"].as_array_mut() {
        c.push(
            json!({"type": typ, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}),
        );
    }
}

fn is_approved(csr: &Value) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c.get("type") == Some(&json!("Approved"))))
}

fn auto_approvable(csr: &Value) -> bool {
    if csr.pointer("/spec/signerName").and_then(Value::as_str) != Some(KUBELET_CLIENT_SIGNER) {
        return false;
    }
    let groups: Vec<&str> = csr
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let user = csr
        .pointer("/spec/username")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cn = csr_cn(csr).unwrap_or_default();
    groups.contains(&"system:bootstrappers") || (groups.contains(&"system:nodes") && user == cn)
}

fn csr_cn(csr: &Value) -> Option<String> {
    let req = csr.pointer("/spec/request").and_then(Value::as_str)?;
    let pem = pki::base64_decode(req)?;
    let der = pki::pem_block(&pem, "CERTIFICATE REQUEST")?;
    pki::csr_subject(&der)?.common_name
}

fn validate_csr(r: &Route, csr: &mut Value, user: &User) -> Result<(), Reply> {
    let name = r.name.clone();
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if signer.is_empty() {
        return Err(invalid(r, &name, "spec.signerName: Required value"));
    }
    let Some(req) = csr.pointer("/spec/request").and_then(Value::as_str) else {
        return Err(invalid(r, &name, "spec.request: Required value"));
    };
    let der = pki::base64_decode(req)
        .and_then(|pem| pki::pem_block(&pem, "CERTIFICATE REQUEST"))
        .ok_or_else(|| invalid(r, &name, "spec.request: Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST"))?;
    let subject = pki::csr_subject(&der).ok_or_else(|| {
        invalid(
            r,
            &name,
            "spec.request: Invalid value: could not parse certificate request",
        )
    })?;
    if signer == KUBELET_CLIENT_SIGNER {
        let cn = subject.common_name.clone().unwrap_or_default();
        if subject.organizations != ["system:nodes"] {
            return Err(invalid(
                r,
                &name,
                "spec.request: Invalid value: subject organization must be [\"system:nodes\"]",
            ));
        }
        if !cn.starts_with("system:node:") || cn.len() <= "system:node:".len() {
            return Err(invalid(
                r,
                &name,
                "spec.request: Invalid value: subject common name must begin with \"system:node:\"",
            ));
        }
        let usages: Vec<&str> = csr
            .pointer("/spec/usages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let allowed = ["digital signature", "key encipherment", "client auth"];
        if !usages.contains(&"client auth") || usages.iter().any(|u| !allowed.contains(u)) {
            return Err(invalid(r, &name, "spec.usages: Unsupported value: usages must be client auth with digital signature and/or key encipherment"));
        }
    }
    csr["spec"]["username"] = json!(user.name);
    csr["spec"]["groups"] = json!(user.groups);
    csr["status"] = json!({});
    Ok(())
}

fn strip_type_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    v
}

fn list(st: &Store, r: &Route, sel: &Selector, q: &[(String, String)]) -> Reply {
    let k = kind(r.kind);
    let ns = if r.ns.is_empty() {
        None
    } else {
        Some(r.ns.as_str())
    };
    let all: Vec<&Value> = st
        .list(r.kind, ns)
        .into_iter()
        .filter(|o| sel.matches(o))
        .collect();
    let offset: usize = query(q, "continue")
        .and_then(pki::base64_decode)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let limit: usize = query(q, "limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| strip_type_meta(o))
        .collect();
    let mut md = json!({"resourceVersion": st.rv().to_string()});
    let next = offset.saturating_add(items.len());
    if next < all.len() {
        md["continue"] = json!(pki::base64_encode(next.to_string().as_bytes()));
        md["remainingItemCount"] = json!(all.len() - next);
    }
    ok(
        200,
        json!({"kind": format!("{}List", k.kind), "apiVersion": k.api_version(), "metadata": md, "items": items}),
    )
}

fn watch_plan(
    api: &Api,
    st: &Store,
    r: &Route,
    selector: Selector,
    q: &[(String, String)],
) -> Reply {
    let send_initial = truthy(query(q, "sendInitialEvents"));
    let bookmarks = truthy(query(q, "allowWatchBookmarks"));
    if send_initial && (query(q, "resourceVersionMatch") != Some("NotOlderThan") || !bookmarks) {
        return ok(422, status(422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is allowed only with resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true", None));
    }
    let from_rv = match query(q, "resourceVersion").unwrap_or("") {
        "" | "0" => None,
        s => match s.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => return fail(400, "BadRequest", format!("invalid resource version {s:?}")),
        },
    };
    if let Some(rv) = from_rv {
        if rv < st.compacted_rv() && !send_initial && *lock(&api.expired) == ExpiredMode::Http410 {
            return ok(
                410,
                status(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({})", st.compacted_rv()),
                    None,
                ),
            );
        }
    }
    let timeout = query(q, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|&t| t > 0)
        .map(Duration::from_secs)
        .unwrap_or(api.default_watch_timeout);
    Reply::Watch(WatchPlan {
        kind: r.kind,
        ns: if r.ns.is_empty() {
            None
        } else {
            Some(r.ns.clone())
        },
        selector,
        from_rv: if send_initial { None } else { from_rv },
        send_initial,
        bookmarks,
        timeout,
    })
}

fn non_resource(path: &str) -> Reply {
    match path.trim_end_matches('/') {
        "/healthz" | "/readyz" | "/livez" => Reply::Text(200, "ok".into()),
        "/version" => ok(
            200,
            json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}),
        ),
        "/api" => ok(
            200,
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        "/apis" => {
            let mut groups: Vec<&str> = store::KINDS
                .iter()
                .map(|k| k.group)
                .filter(|g| !g.is_empty())
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|g| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}}))
                .collect();
            ok(
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        _ => fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}
