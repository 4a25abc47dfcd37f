//! Collections and change notifications: `List<T>` (a list response) and `WatchEvent<T>`
//! (one line of a watch stream).
//!
//! Generic over the object type so Pods, Services, EndpointSlices and anything else decode
//! the same way. Splitting the stream into lines is the API client's job, not this module's.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use super::meta::{ListMeta, ObjectMeta};
use super::status::Status;

/// The annotation on the BOOKMARK that ends a streaming list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A list response: `{"metadata":{"resourceVersion":..},"items":[..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub struct List<T> {
    /// The list's resourceVersion: watch from here.
    #[serde(default)]
    pub metadata: ListMeta,
    /// `null` from the server is read as an empty list.
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            metadata: ListMeta::default(),
            items: Vec::new(),
        }
    }
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// One event of a watch stream.
// Events are handled one at a time and never stored in bulk, so the size spread is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    /// A new object.
    Added(T),
    /// A changed object (full new state).
    Modified(T),
    /// A removed object (last state).
    Deleted(T),
    /// Progress marker: only the resourceVersion (and annotations) are meaningful.
    Bookmark(Bookmark),
    /// The server ended the watch with a Status, e.g. code 410 when the version is too old.
    Error(Status),
}

/// The payload of a BOOKMARK event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookmark {
    /// Everything up to this version has been delivered.
    pub resource_version: String,
    /// e.g. `k8s.io/initial-events-end`.
    pub annotations: BTreeMap<String, String>,
}

impl Bookmark {
    /// True for the bookmark that ends the initial events of a streaming list.
    pub fn is_initial_events_end(&self) -> bool {
        self.annotations
            .get(INITIAL_EVENTS_END)
            .is_some_and(|v| v == "true")
    }
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BookmarkObject {
    metadata: ObjectMeta,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for WatchEvent<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawEvent::deserialize(d)?;
        let object = |what: &str| {
            T::deserialize(raw.object.clone())
                .map_err(|e| D::Error::custom(format!("{what} event object: {e}")))
        };
        match raw.kind.as_str() {
            "ADDED" => Ok(WatchEvent::Added(object("ADDED")?)),
            "MODIFIED" => Ok(WatchEvent::Modified(object("MODIFIED")?)),
            "DELETED" => Ok(WatchEvent::Deleted(object("DELETED")?)),
            "BOOKMARK" => {
                let b = BookmarkObject::deserialize(raw.object)
                    .map_err(|e| D::Error::custom(format!("BOOKMARK event object: {e}")))?;
                Ok(WatchEvent::Bookmark(Bookmark {
                    resource_version: b.metadata.resource_version,
                    annotations: b.metadata.annotations,
                }))
            }
            "ERROR" => {
                let s = Status::deserialize(raw.object)
                    .map_err(|e| D::Error::custom(format!("ERROR event object: {e}")))?;
                Ok(WatchEvent::Error(s))
            }
            other => Err(D::Error::custom(format!(
                "unknown watch event type {:?}",
                truncate(other, 32)
            ))),
        }
    }
}

impl<T: Serialize> Serialize for WatchEvent<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("WatchEvent", 2)?;
        match self {
            WatchEvent::Added(o) => {
                st.serialize_field("type", "ADDED")?;
                st.serialize_field("object", o)?;
            }
            WatchEvent::Modified(o) => {
                st.serialize_field("type", "MODIFIED")?;
                st.serialize_field("object", o)?;
            }
            WatchEvent::Deleted(o) => {
                st.serialize_field("type", "DELETED")?;
                st.serialize_field("object", o)?;
            }
            WatchEvent::Bookmark(b) => {
                st.serialize_field("type", "BOOKMARK")?;
                let meta = ObjectMeta {
                    resource_version: b.resource_version.clone(),
                    annotations: b.annotations.clone(),
                    ..Default::default()
                };
                st.serialize_field("object", &serde_json::json!({ "metadata": meta }))?;
            }
            WatchEvent::Error(status) => {
                st.serialize_field("type", "ERROR")?;
                st.serialize_field("object", status)?;
            }
        }
        st.end()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    #[serde(default)]
    struct Thing {
        metadata: ObjectMeta,
        value: i32,
    }

    fn thing(name: &str, v: i32) -> Thing {
        Thing {
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            value: v,
        }
    }

    #[test]
    fn list_round_trip_and_null_items() {
        let l = List {
            metadata: ListMeta {
                resource_version: "7".into(),
                ..Default::default()
            },
            items: vec![thing("a", 1), thing("b", 2)],
        };
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<List<Thing>>(&j).unwrap(), l);
        let empty: List<Thing> = serde_json::from_str(
            r#"{"kind":"PodList","metadata":{"resourceVersion":"3"},"items":null}"#,
        )
        .unwrap();
        assert!(empty.items.is_empty());
        assert_eq!(empty.metadata.resource_version, "3");
    }

    #[test]
    fn every_event_type_round_trips() {
        let mut ann = BTreeMap::new();
        ann.insert(INITIAL_EVENTS_END.to_string(), "true".to_string());
        let events = vec![
            WatchEvent::Added(thing("a", 1)),
            WatchEvent::Modified(thing("a", 2)),
            WatchEvent::Deleted(thing("a", 2)),
            WatchEvent::Bookmark(Bookmark {
                resource_version: "99".into(),
                annotations: ann,
            }),
            WatchEvent::Error(Status {
                kind: "Status".into(),
                code: 410,
                reason: "Expired".into(),
                ..Default::default()
            }),
        ];
        for e in events {
            let j = serde_json::to_string(&e).unwrap();
            let back: WatchEvent<Thing> = serde_json::from_str(&j).unwrap();
            assert_eq!(back, e, "{j}");
        }
    }

    #[test]
    fn bookmark_of_a_typed_watch_needs_no_full_object() {
        let e: WatchEvent<Thing> = serde_json::from_str(
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
        )
        .unwrap();
        match e {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.resource_version, "12");
                assert!(b.is_initial_events_end());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_events_are_errors() {
        for bad in [
            r#"{"type":"SURPRISE","object":{}}"#,
            r#"{"object":{}}"#,
            r#"{"type":"ADDED","object":{"value":"not a number"}}"#,
            r#"{"type":"ERROR","object":{"code":"x"}}"#,
            r#"[]"#,
            r#"{"type":7}"#,
        ] {
            assert!(
                serde_json::from_str::<WatchEvent<Thing>>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_type_error_is_short() {
        let long = format!(r#"{{"type":"{}","object":{{}}}}"#, "X".repeat(10_000));
        let e = serde_json::from_str::<WatchEvent<Thing>>(&long).unwrap_err();
        assert!(e.to_string().len() < 200);
    }
}
