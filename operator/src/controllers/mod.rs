//! Controllers: one per custom resource. Each reconcile is idempotent
//! (server-side apply under one field manager), writes `status` with
//! `observedGeneration` and conditions, and publishes Events for what a
//! user must act on.

pub mod cluster;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::names::MANAGER;

/// What every reconcile needs.
#[derive(Clone)]
pub struct Context {
    /// The API server.
    pub client: Client,
    /// Publishes Events on the reconciled resources.
    pub recorder: Recorder,
}

impl Context {
    /// A context on `client`, reporting as `ranvier-operator` (`instance`:
    /// the operator's pod, when known).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: MANAGER.to_owned(), instance };
        Context { recorder: Recorder::new(client.clone(), reporter), client }
    }
}
