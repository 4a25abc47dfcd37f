//! Object metadata shared by every API type (meta/v1 ObjectMeta and friends).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// meta/v1 ObjectMeta: the subset a node agent reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub generation: i64,
    /// RFC 3339 time as sent by the server; kept as text, parsed where it is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// meta/v1 OwnerReference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// meta/v1 ListMeta.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    pub continue_token: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl ObjectMeta {
    /// `namespace/name`, the way objects are named in logs and errors.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_missing_defaulted() {
        let m: ObjectMeta =
            serde_json::from_str(r#"{"name":"a","managedFields":[{"x":1}],"labels":{"k":"v"}}"#)
                .unwrap();
        assert_eq!(m.name, "a");
        assert_eq!(m.labels.get("k").map(String::as_str), Some("v"));
        assert!(m.namespace.is_empty());
        assert_eq!(m.key(), "a");
    }

    #[test]
    fn round_trip_omits_empty_fields() {
        let m = ObjectMeta {
            name: "p".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"name":"p","namespace":"ns"}"#);
        assert_eq!(serde_json::from_str::<ObjectMeta>(&s).unwrap(), m);
    }
}
