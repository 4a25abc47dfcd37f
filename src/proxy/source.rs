//! Sources of Services and EndpointSlices, and the model they feed.
//!
//! A source only produces objects; [`Model`] holds the latest of each and is what the desired
//! table is computed from, so a future API watch can feed the same model with upserts and
//! deletes. The manifest directory source reads `*.yaml`, `*.yml` and `*.json` files holding
//! one or more objects (`---` separated YAML documents, or `kind: List`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Deserialize;

use super::Error;
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;

/// An object a proxy source can produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
}

/// The latest Services and EndpointSlices, keyed by namespace/name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
}

impl Model {
    /// Insert or replace an object.
    pub fn upsert(&mut self, o: Object) {
        match o {
            Object::Service(s) => {
                self.services.insert(s.metadata.key(), s);
            }
            Object::EndpointSlice(s) => {
                self.slices.insert(s.metadata.key(), s);
            }
        }
    }

    /// Remove an object.
    pub fn delete(&mut self, o: &Object) {
        match o {
            Object::Service(s) => {
                self.services.remove(&s.metadata.key());
            }
            Object::EndpointSlice(s) => {
                self.slices.remove(&s.metadata.key());
            }
        }
    }

    /// Replace everything (a full listing).
    pub fn replace(&mut self, objects: Vec<Object>) {
        *self = Model::default();
        for o in objects {
            self.upsert(o);
        }
    }

    /// Replaces every Service (after a re-list), keeping the EndpointSlices.
    pub fn replace_services(&mut self, services: Vec<Service>) {
        self.services = services
            .into_iter()
            .map(|s| (s.metadata.key(), s))
            .collect();
    }

    /// Replaces every EndpointSlice (after a re-list), keeping the Services.
    pub fn replace_slices(&mut self, slices: Vec<EndpointSlice>) {
        self.slices = slices.into_iter().map(|s| (s.metadata.key(), s)).collect();
    }

    /// Services, ordered by key.
    pub fn services(&self) -> Vec<Service> {
        self.services.values().cloned().collect()
    }

    /// Services, ordered by key, without copying them.
    pub fn service_refs(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// EndpointSlices, ordered by key, without copying them.
    pub fn slice_refs(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.slices.values()
    }

    /// EndpointSlices, ordered by key.
    pub fn slices(&self) -> Vec<EndpointSlice> {
        self.slices.values().cloned().collect()
    }
}

fn classify(v: serde_json::Value, out: &mut Vec<Object>, depth: u32) -> Result<(), String> {
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let ns_default = |o: &mut crate::k8s::meta::ObjectMeta| {
        if o.namespace.is_empty() {
            o.namespace = "default".into();
        }
    };
    match kind.as_str() {
        "Service" => {
            let mut s: Service = serde_json::from_value(v).map_err(|e| format!("Service: {e}"))?;
            ns_default(&mut s.metadata);
            out.push(Object::Service(s));
        }
        "EndpointSlice" => {
            let mut s: EndpointSlice =
                serde_json::from_value(v).map_err(|e| format!("EndpointSlice: {e}"))?;
            ns_default(&mut s.metadata);
            out.push(Object::EndpointSlice(s));
        }
        k if k == "List" || k.ends_with("List") => {
            if depth > 4 {
                return Err("lists nested too deep".into());
            }
            if let Some(serde_json::Value::Array(items)) = v.get("items").cloned() {
                for item in items {
                    classify(item, out, depth + 1)?;
                }
            }
        }
        // Other kinds may share the directory with the kubelet's manifests.
        _ => {}
    }
    Ok(())
}

/// Parse one manifest file's text; `json` selects the JSON parser, else YAML documents.
pub fn parse_manifest(text: &str, json: bool) -> Result<Vec<Object>, String> {
    let mut out = Vec::new();
    if json {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        classify(v, &mut out, 0)?;
    } else {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let v = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
            if !v.is_null() {
                classify(v, &mut out, 0)?;
            }
        }
    }
    Ok(out)
}

/// Read every manifest in `dir` (not recursive). Any unreadable or invalid file fails the
/// whole read, so a half-written file never removes services.
pub fn load_dir(dir: &Path) -> Result<Vec<Object>, Error> {
    let mut out = Vec::new();
    load_dir_each(dir, |o| out.push(o))?;
    Ok(out)
}

/// [`load_dir`], handing each object to `f` as its file is parsed instead of collecting
/// them: a caller that keeps less than the objects never holds all of them at once. On an
/// error `f` may have seen some objects; the caller discards what it built from them.
pub fn load_dir_each(dir: &Path, mut f: impl FnMut(Object)) -> Result<(), Error> {
    let err = |what: String| Error::Source {
        path: dir.display().to_string(),
        what,
    };
    let mut paths: Vec<_> = fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            matches!(ext, "yaml" | "yml" | "json") && p.is_file()
        })
        .collect();
    paths.sort();
    for p in paths {
        let perr = |what: String| Error::Source {
            path: p.display().to_string(),
            what,
        };
        let text = fs::read_to_string(&p).map_err(|e| perr(e.to_string()))?;
        let json = p.extension().and_then(|e| e.to_str()) == Some("json");
        for o in parse_manifest(&text, json).map_err(perr)? {
            f(o);
        }
    }
    Ok(())
}

/// A cheap digest of the directory (names, sizes, mtimes) to notice changes, one number
/// rather than a list: what a loop that rescans a large directory every few hundred
/// milliseconds keeps. Equal directories give equal digests; a change goes unnoticed with
/// a chance of 2^-64.
pub fn dir_digest(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut sum = 0u64;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        let Some(t) = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        else {
            continue;
        };
        // Each entry hashed alone and the hashes added: the order read_dir returns them in
        // does not matter, so nothing is sorted.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (e.file_name(), m.len(), t.as_nanos()).hash(&mut h);
        sum = sum.wrapping_add(h.finish());
    }
    sum
}
