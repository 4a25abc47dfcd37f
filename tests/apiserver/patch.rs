//! Patch semantics of the API server: JSON merge patch (RFC 7386) and the subset of strategic
//! merge patch a node agent uses (lists merged by their merge keys, `$patch` and
//! `$setElementOrder/` directives).
//!
//! Pure functions over `serde_json::Value`; no store, no HTTP.

use serde_json::{Map, Value};

/// JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The merge key of a list field in the types a node agent patches, if it has one.
/// Lists without a merge key are replaced, as upstream does for atomic lists.
pub fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses" => {
            Some("name")
        }
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" => Some("name"),
        "imagePullSecrets" | "resourceClaimStatuses" => Some("name"),
        "conditions" | "addresses" => Some("type"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ownerReferences" => Some("uid"),
        "ports" => Some("containerPort"),
        "podIPs" | "hostIPs" => Some("ip"),
        _ => None,
    }
}

/// Strategic merge patch as the API server applies it for the built-in types.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        strip_directives(&mut clean);
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v) {
            (Some(key), Value::Array(items)) if items.iter().all(|i| i.get(key).is_some()) => {
                let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                if let Value::Array(cur) = slot {
                    merge_list(cur, items, key);
                }
            }
            (_, Value::Object(inner)) => {
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                    continue;
                }
                strategic_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v)
            }
            _ => {
                let mut clean = v.clone();
                strip_directives(&mut clean);
                t.insert(k.clone(), clean);
            }
        }
    }
    // `$setElementOrder/<field>` gives the final order of a merged list.
    for (k, order) in p {
        let Some(field) = k.strip_prefix("$setElementOrder/") else {
            continue;
        };
        let (Some(key), Some(Value::Array(order)), Some(Value::Array(cur))) =
            (merge_key(field), Some(order), t.get_mut(field))
        else {
            continue;
        };
        let mut sorted = Vec::with_capacity(cur.len());
        for o in order {
            if let Some(pos) = cur.iter().position(|c| c.get(key) == o.get(key)) {
                sorted.push(cur.remove(pos));
            }
        }
        sorted.append(cur);
        *cur = sorted;
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let id = item.get(key);
        let directive = item.get("$patch").and_then(Value::as_str);
        let pos = cur.iter().position(|c| c.get(key) == id);
        match (directive, pos) {
            (Some("delete"), Some(i)) => {
                cur.remove(i);
            }
            (Some("delete"), None) => {}
            (Some("replace"), Some(i)) => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                if let Some(slot) = cur.get_mut(i) {
                    *slot = clean;
                }
            }
            (_, Some(i)) => {
                if let Some(slot) = cur.get_mut(i) {
                    strategic_merge_patch(slot, item);
                }
            }
            (_, None) => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                cur.push(clean);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// JSON patch (RFC 6902) ops add, remove, replace and test. Err names the failing op.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("json patch must be an array")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("op without \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("op without \"path\"")?;
        let (parent, last) = match path.rfind('/') {
            Some(i) => (
                path.get(..i).unwrap_or(""),
                unescape(path.get(i + 1..).unwrap_or("")),
            ),
            None => return Err(format!("bad path {path:?}")),
        };
        match kind {
            "test" => {
                if target.pointer(path) != op.get("value") {
                    return Err(format!("test failed at {path}"));
                }
            }
            "remove" => {
                let p = target
                    .pointer_mut(parent)
                    .ok_or(format!("no parent for {path}"))?;
                let removed = match p {
                    Value::Object(m) => m.remove(&last).is_some(),
                    Value::Array(a) => match last.parse::<usize>() {
                        Ok(i) if i < a.len() => {
                            a.remove(i);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !removed {
                    return Err(format!("nothing to remove at {path}"));
                }
            }
            "add" | "replace" => {
                let value = op.get("value").cloned().ok_or("op without \"value\"")?;
                let p = target
                    .pointer_mut(parent)
                    .ok_or(format!("no parent for {path}"))?;
                match p {
                    Value::Object(m) => {
                        if kind == "replace" && !m.contains_key(&last) {
                            return Err(format!("nothing to replace at {path}"));
                        }
                        m.insert(last, value);
                    }
                    Value::Array(a) => {
                        let i = if last == "-" {
                            a.len()
                        } else {
                            last.parse::<usize>()
                                .map_err(|_| format!("bad index in {path}"))?
                        };
                        if kind == "replace" {
                            *a.get_mut(i)
                                .ok_or(format!("nothing to replace at {path}"))? = value;
                        } else if i <= a.len() {
                            a.insert(i, value);
                        } else {
                            return Err(format!("index out of range in {path}"));
                        }
                    }
                    _ => return Err(format!("parent of {path} is not a container")),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_conditions_by_type() {
        let mut t = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        strategic_merge_patch(
            &mut t,
            &json!({"status": {
            "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}, {"type": "Initialized"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}}),
        );
        assert_eq!(
            t,
            json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"},
            {"type": "Initialized", "status": "True"}]}})
        );
    }

    #[test]
    fn strategic_delete_directive() {
        let mut t = json!({"containerStatuses": [{"name": "a"}, {"name": "b"}]});
        strategic_merge_patch(
            &mut t,
            &json!({"containerStatuses": [{"name": "a", "$patch": "delete"}]}),
        );
        assert_eq!(t, json!({"containerStatuses": [{"name": "b"}]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"a": [1, 2], "b": {"c": 1}});
        json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/b/c"},
            {"op": "replace", "path": "/a/0", "value": 0}]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": [0, 2, 3], "b": {}}));
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/a/0", "value": 9}])).is_err());
    }
}
