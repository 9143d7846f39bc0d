//! The contexts this node stores and their stores. A context whose store
//! failed to open (corruption, a locked directory) stays listed with its
//! error: its calls fail with that error while the other contexts serve.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::store::{ContextStore, DiskSpace, StoreError, StoreKind, StoreOptions};
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
    stores: BTreeMap<String, Result<ContextStore, String>>,
}

impl Contexts {
    /// Opens the named contexts plus every context directory already present
    /// under the events root (so stored data is never orphaned by config).
    pub fn open(
        names: &[String],
        events_root: &Path,
        snapshots_root: &Path,
        options: &ContextOptions,
        metrics: &Metrics,
        space: Arc<dyn DiskSpace>,
    ) -> Self {
        let mut all: Vec<String> = names.to_vec();
        if let Ok(entries) = std::fs::read_dir(events_root) {
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
                    && !name.starts_with('.')
                    && !all.iter().any(|n| n == name)
                {
                    all.push(name.to_owned());
                }
            }
        }
        let mut stores = BTreeMap::new();
        for name in all {
            let store_metrics = (metrics.store(&name, StoreKind::Events), metrics.store(&name, StoreKind::Snapshots));
            let opened = ContextStore::open(
                &name,
                events_root,
                snapshots_root,
                options.events.clone(),
                options.snapshots.clone(),
                store_metrics,
                space.clone(),
            );
            match opened {
                Ok(store) => {
                    tracing::info!(context = %name, next_token = store.events.next_token(), "context store opened");
                    stores.insert(name, Ok(store));
                }
                Err(error) => {
                    tracing::error!(context = %name, %error, "context store failed to open; the context is stopped");
                    stores.insert(name, Err(describe(&error)));
                }
            }
        }
        Self { stores }
    }

    /// The store of a context.
    pub fn get(&self, name: &str) -> Option<&Result<ContextStore, String>> {
        self.stores.get(name)
    }

    /// Every context with its state.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Result<ContextStore, String>)> {
        self.stores.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// True when every context opened.
    pub fn all_open(&self) -> bool {
        self.stores.values().all(Result::is_ok)
    }

    /// Stops every writer after its queued transactions.
    pub fn close(self) {
        for store in self.stores.into_values().flatten() {
            store.events.close();
            store.snapshots.close();
        }
    }
}

fn describe(error: &StoreError) -> String {
    format!("the context store could not be opened: {error}")
}
