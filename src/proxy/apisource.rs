//! The API server as a source of Services and EndpointSlices: two list+watch loops (the
//! `api::watch` machinery: bookmarks, 410 re-lists, back-off) on their own threads, feeding
//! changes over a channel into the same [`Model`] the manifest directory feeds.
//!
//! Blocking I/O stays on those threads; the proxy loop only receives changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::source::{Model, Object};
use crate::api::client::{Client, ListParams};
use crate::api::watch::{Informer, InformerConfig, InformerEvent, ListWatch};
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;

/// One change from the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Object),
    Delete(Object),
    /// The complete set of Services after a (re-)list.
    Services(Vec<Service>),
    /// The complete set of EndpointSlices after a (re-)list.
    Slices(Vec<EndpointSlice>),
}

impl Change {
    /// Applies the change to the model.
    pub fn apply(self, model: &mut Model) {
        match self {
            Change::Upsert(o) => model.upsert(o),
            Change::Delete(o) => model.delete(&o),
            Change::Services(v) => model.replace_services(v),
            Change::Slices(v) => model.replace_slices(v),
        }
    }
}

/// What a proxy mode keeps of the API's objects, folding in one change at a time: the
/// parsed objects ([`Model`]), or only what its rules read of them.
pub trait Fold: Default {
    /// Fold the change in.
    fn fold(&mut self, c: Change);
}

impl Fold for Model {
    fn fold(&mut self, c: Change) {
        c.apply(self)
    }
}

/// Stops the watch threads when dropped or on [`ApiSource::stop`].
pub struct ApiSource {
    stop: Arc<AtomicBool>,
    /// Changes, in the order the server sent them per resource.
    pub changes: Receiver<Change>,
}

impl ApiSource {
    /// Starts watching all Services and EndpointSlices.
    pub fn start(client: Client, config: InformerConfig) -> std::io::Result<ApiSource> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_watch::<Service>(
            "proxy-services",
            client.clone(),
            "/api/v1/services",
            config,
            |s| &s.metadata,
            |ev| match ev {
                InformerEvent::Applied(s) => Change::Upsert(Object::Service(s)),
                InformerEvent::Deleted(s) => Change::Delete(Object::Service(s)),
                InformerEvent::Resync(v) => Change::Services(v),
            },
            tx.clone(),
            stop.clone(),
        )?;
        spawn_watch::<EndpointSlice>(
            "proxy-slices",
            client,
            "/apis/discovery.k8s.io/v1/endpointslices",
            config,
            |s| &s.metadata,
            |ev| match ev {
                InformerEvent::Applied(s) => Change::Upsert(Object::EndpointSlice(s)),
                InformerEvent::Deleted(s) => Change::Delete(Object::EndpointSlice(s)),
                InformerEvent::Resync(v) => Change::Slices(v),
            },
            tx,
            stop.clone(),
        )?;
        Ok(ApiSource { stop, changes: rx })
    }

    /// Asks the watch threads to stop (they notice at their next wait).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for ApiSource {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn_watch<T>(
    name: &str,
    client: Client,
    path: &'static str,
    config: InformerConfig,
    meta: crate::api::watch::MetaFn<T>,
    convert: fn(InformerEvent<T>) -> Change,
    tx: Sender<Change>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()>
where
    T: serde::de::DeserializeOwned + Clone + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let informer = Informer::new(config, meta);
            let mut lw = ListWatch::new(client, path, ListParams::default(), informer);
            // Sleeps in short steps so a stop request is seen within 100 ms.
            let mut sleep = |d: Duration| -> bool {
                let mut left = d;
                while !left.is_zero() {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    let step = left.min(Duration::from_millis(100));
                    std::thread::sleep(step);
                    left -= step;
                }
                !stop.load(Ordering::Relaxed)
            };
            while let Some(ev) = lw.next_event(&mut sleep) {
                if stop.load(Ordering::Relaxed) || tx.send(convert(ev)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
