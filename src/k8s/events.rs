//! Events as the kubelet posts them: core/v1 `Event` and events.k8s.io/v1 `Event`, plus the
//! core/v1 `ObjectReference` both point with.
//!
//! Owns the shapes and constructors; rate-limiting and aggregating events is the recorder's job.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::coordination::{format_micro_time, format_time};
use super::meta::ObjectMeta;

/// core/v1 ObjectReference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// e.g. `spec.containers{app}` to point at one container.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field_path: String,
}

/// core/v1 EventSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub component: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// core/v1 Event (what `kubectl describe` shows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub involved_object: ObjectReference,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub source: EventSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub count: i32,
    /// "Normal" or "Warning".
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reporting_component: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

/// events.k8s.io/v1 Event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventV1 {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    /// MicroTime; required by the server.
    pub event_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<EventSeries>,
    pub reporting_controller: String,
    pub reporting_instance: String,
    pub action: String,
    pub reason: String,
    pub regarding: ObjectReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectReference>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(rename = "type")]
    pub event_type: String,
}

/// events.k8s.io/v1 EventSeries: a repeated event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventSeries {
    pub count: i32,
    /// MicroTime.
    pub last_observed_time: String,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl Event {
    /// A core/v1 event from the kubelet on `node`, named the way the kubelet names them.
    pub fn from_kubelet(
        node: &str,
        regarding: ObjectReference,
        event_type: &str,
        reason: &str,
        message: &str,
        now: SystemTime,
    ) -> Self {
        let ts = format_time(now);
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let namespace = if regarding.namespace.is_empty() {
            "default".to_string()
        } else {
            regarding.namespace.clone()
        };
        Event {
            api_version: "v1".into(),
            kind: "Event".into(),
            metadata: ObjectMeta {
                // name.<hex nanos> is what upstream uses, so names stay unique per object.
                name: format!("{}.{:x}", regarding.name, nanos),
                namespace,
                ..Default::default()
            },
            involved_object: regarding,
            reason: reason.into(),
            message: message.into(),
            source: EventSource {
                component: "kubelet".into(),
                host: node.into(),
            },
            first_timestamp: Some(ts.clone()),
            last_timestamp: Some(ts),
            count: 1,
            event_type: event_type.into(),
            event_time: None,
            reporting_component: "kubelet".into(),
            reporting_instance: node.into(),
        }
    }

    /// The same event in events.k8s.io/v1 form.
    pub fn to_v1(&self, now: SystemTime) -> EventV1 {
        EventV1 {
            api_version: "events.k8s.io/v1".into(),
            kind: "Event".into(),
            metadata: self.metadata.clone(),
            event_time: format_micro_time(now),
            series: None,
            reporting_controller: self.reporting_component.clone(),
            reporting_instance: self.reporting_instance.clone(),
            action: self.reason.clone(),
            reason: self.reason.clone(),
            regarding: self.involved_object.clone(),
            related: None,
            note: self.message.clone(),
            event_type: self.event_type.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pod_ref() -> ObjectReference {
        ObjectReference {
            kind: "Pod".into(),
            namespace: "web".into(),
            name: "nginx".into(),
            uid: "u1".into(),
            api_version: "v1".into(),
            field_path: "spec.containers{nginx}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn kubelet_event_shape() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let e = Event::from_kubelet("pi-1", pod_ref(), "Normal", "Pulled", "pulled", now);
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["metadata"]["namespace"], "web");
        assert_eq!(j["involvedObject"]["fieldPath"], "spec.containers{nginx}");
        assert_eq!(j["source"]["component"], "kubelet");
        assert_eq!(j["firstTimestamp"], "2024-05-01T12:00:00Z");
        assert_eq!(j["type"], "Normal");
        assert_eq!(j["count"], 1);
        assert_eq!(serde_json::from_value::<Event>(j).unwrap(), e);
    }

    #[test]
    fn events_v1_shape() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let e = Event::from_kubelet("pi-1", pod_ref(), "Warning", "BackOff", "m", now).to_v1(now);
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["eventTime"], "2024-05-01T12:00:00.000000Z");
        assert_eq!(j["regarding"]["name"], "nginx");
        assert_eq!(j["reportingController"], "kubelet");
        assert_eq!(j["note"], "m");
        assert_eq!(serde_json::from_value::<EventV1>(j).unwrap(), e);
    }
}
