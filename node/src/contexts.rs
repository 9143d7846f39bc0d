//! The contexts this node stores and their stores. A context whose store
//! failed to open (corruption, a locked directory) stays listed with its
//! error: its calls fail with that error while the other contexts serve.
//! On a clustered node contexts come and go with the cluster model: a
//! store is opened when this node becomes a storing member of the context's
//! group, and closed (its files deleted, unless preserved) when it leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::store::{ContextStore, DiskReserve, DiskSpace, StoreError, StoreKind, StoreOptions};
use crate::telemetry::Metrics;

/// Options for every context store of the node.
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// Options of the event stores.
    pub events: StoreOptions,
    /// Options of the snapshot stores.
    pub snapshots: StoreOptions,
}

/// Name → store, or the reason it could not be opened.
pub struct Contexts {
    stores: RwLock<BTreeMap<String, Result<ContextStore, String>>>,
    events_root: PathBuf,
    snapshots_root: PathBuf,
    options: ContextOptions,
    metrics: Arc<Metrics>,
    space: Arc<dyn DiskSpace>,
}

impl Contexts {
    /// Opens the named contexts plus every context directory already present
    /// under the events root (so stored data is never orphaned by config).
    pub fn open(
        names: &[String],
        events_root: &Path,
        snapshots_root: &Path,
        options: &ContextOptions,
        metrics: Arc<Metrics>,
        space: Arc<dyn DiskSpace>,
    ) -> Self {
        let mut all: Vec<String> = names.to_vec();
        if let Ok(entries) = std::fs::read_dir(events_root) {
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|_| is_dir) else { continue };
                if name.starts_with('.') || all.iter().any(|n| n == name) {
                    continue;
                }
                // A folder no context could have made (`lost+found` at a
                // volume's root) is not a context: it is left alone.
                if !ranvier_wire::valid_stored_name(name) {
                    tracing::warn!(folder = %entry.path().display(), "not a context name: folder ignored");
                    continue;
                }
                all.push(name.to_owned());
            }
        }
        let contexts = Self {
            stores: RwLock::new(BTreeMap::new()),
            events_root: events_root.to_owned(),
            snapshots_root: snapshots_root.to_owned(),
            options: options.clone(),
            metrics,
            space,
        };
        for name in all {
            let _ = contexts.ensure(&name);
        }
        contexts
    }

    /// The disk reserve of the stores' file systems and of `others` (the
    /// replication log's directory).
    pub fn reserve(&self, others: &[PathBuf]) -> DiskReserve {
        let mut dirs = vec![self.events_root.clone(), self.snapshots_root.clone()];
        dirs.extend(others.iter().cloned());
        DiskReserve::new(self.space.clone(), self.options.events.disk_reserve_bytes, dirs)
    }

    /// The store of `name`, opening (creating) it when this node has none yet.
    pub fn ensure(&self, name: &str) -> Result<ContextStore, String> {
        if let Some(known) = self.get(name) {
            return known;
        }
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = stores.get(name) {
            return known.clone();
        }
        let store_metrics =
            (self.metrics.store(name, StoreKind::Events), self.metrics.store(name, StoreKind::Snapshots));
        let opened = ContextStore::open(
            name,
            &self.events_root,
            &self.snapshots_root,
            self.options.events.clone(),
            self.options.snapshots.clone(),
            store_metrics,
            self.space.clone(),
        );
        let entry = match opened {
            Ok(store) => {
                tracing::info!(context = %name, next_token = store.events.next_token(), "context store opened");
                Ok(store)
            }
            Err(error) => {
                tracing::error!(context = %name, %error, "context store failed to open; the context is stopped");
                Err(describe(&error))
            }
        };
        stores.insert(name.to_owned(), entry.clone());
        entry
    }

    /// Closes the store of `name` (its writer stops once no call uses it)
    /// and, unless `preserve`, deletes its event and snapshot files.
    pub fn remove(&self, name: &str, preserve: bool) -> std::io::Result<()> {
        let removed = self.stores.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(Ok(store)) = removed {
            store.events.close();
            store.snapshots.close();
        }
        if !preserve {
            for root in [&self.events_root, &self.snapshots_root] {
                match std::fs::remove_dir_all(root.join(name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        tracing::info!(context = %name, preserve, "context store closed");
        Ok(())
    }

    /// The store of a context.
    pub fn get(&self, name: &str) -> Option<Result<ContextStore, String>> {
        self.stores.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every context with its state, by name.
    pub fn list(&self) -> Vec<(String, Result<ContextStore, String>)> {
        self.stores.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// True when every context opened.
    pub fn all_open(&self) -> bool {
        self.stores.read().unwrap_or_else(|p| p.into_inner()).values().all(Result::is_ok)
    }

    /// Stops every writer after its queued transactions.
    pub fn close(self) {
        let stores = self.stores.into_inner().unwrap_or_else(|p| p.into_inner());
        for store in stores.into_values().flatten() {
            store.events.close();
            store.snapshots.close();
        }
    }
}

fn describe(error: &StoreError) -> String {
    format!("the context store could not be opened: {error}")
}
