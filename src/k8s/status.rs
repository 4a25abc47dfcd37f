//! meta/v1 `Status` (the server's error and result body) and `DeleteOptions`.
//!
//! Owns the shapes only; turning a Status into an error with context is the API client's job.

use serde::{Deserialize, Serialize};

use super::meta::ListMeta;

/// meta/v1 Status: what the server answers on failure (and on some deletes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    pub metadata: ListMeta,
    /// "Success" or "Failure".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason, e.g. "NotFound", "Expired", "Conflict".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

/// meta/v1 StatusDetails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub retry_after_seconds: i32,
}

/// meta/v1 StatusCause: one field-level reason of a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusCause {
    #[serde(rename = "reason", skip_serializing_if = "String::is_empty")]
    pub cause_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// meta/v1 DeleteOptions: the body of a DELETE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeleteOptions {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// 0 confirms a pod is gone; `None` keeps the object's own grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<Preconditions>,
    /// "Orphan", "Background" or "Foreground".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation_policy: Option<String>,
}

/// meta/v1 Preconditions: delete only the object with this uid / resourceVersion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Preconditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl Status {
    /// True when this body is a meta/v1 Status (rather than some object that happens to decode).
    pub fn is_status(&self) -> bool {
        self.kind == "Status"
    }
}

impl DeleteOptions {
    /// Delete now (grace 0), only if the object still has `uid`: how a kubelet confirms a pod is gone.
    pub fn confirm_gone(uid: &str) -> Self {
        DeleteOptions {
            kind: "DeleteOptions".into(),
            api_version: "v1".into(),
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            propagation_policy: None,
        }
    }
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_gone_status() {
        let s: Status = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"too old resource version: 1 (2)","reason":"Expired","code":410}"#,
        )
        .unwrap();
        assert!(s.is_status());
        assert_eq!(s.code, 410);
        assert_eq!(s.reason, "Expired");
    }

    #[test]
    fn status_round_trip_with_details() {
        let s = Status {
            kind: "Status".into(),
            status: "Failure".into(),
            reason: "Invalid".into(),
            code: 422,
            details: Some(StatusDetails {
                name: "n".into(),
                causes: vec![StatusCause {
                    cause_type: "FieldValueRequired".into(),
                    message: "m".into(),
                    field: "spec.x".into(),
                }],
                retry_after_seconds: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&j).unwrap(), s);
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        assert!(serde_json::from_str::<Status>(r#"{"code":"x"}"#).is_err());
        assert!(serde_json::from_str::<Status>(r#"{"code":70000}"#).is_err());
    }

    #[test]
    fn delete_options_confirm_gone_shape() {
        let j = serde_json::to_value(DeleteOptions::confirm_gone("u1")).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"kind":"DeleteOptions","apiVersion":"v1",
                "gracePeriodSeconds":0,"preconditions":{"uid":"u1"}})
        );
    }
}
