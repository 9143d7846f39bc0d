//! Formation: this node joining or founding the cluster, and changes to the
//! cluster model. Autocluster (`axoniq.axonserver.autocluster.first`) acts
//! on a clean start only: the first node initialises `_admin` with itself
//! and founds the cluster with the configured contexts in one admin entry;
//! every other node asks the first to register it as a PRIMARY of those
//! contexts (retrying, with what it is doing shown by readiness), and the
//! leaders then add it to the groups' Raft memberships. `init_cluster`,
//! `join` and `admin` are the same steps on request (REST, `ranvierctl`).

use super::*;

/// Pause between join attempts, at most.
pub(super) const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Cluster {
    pub(super) async fn form(&self) {
        let Some(admin) = self.groups.get(ADMIN) else { return };
        if admin.is_initialized().await.unwrap_or(true) {
            self.refresh_registration().await;
            return;
        }
        let Some(first) = self.settings.first.clone() else { return };
        let founder = self.settings.first_is_me;
        let mut backoff = Duration::from_millis(100);
        let doing = if founder {
            format!("founding the cluster as {first}")
        } else {
            format!("joining the cluster through {first}")
        };
        self.set_formation(Some(doing.clone()));
        loop {
            let result = if founder {
                self.init_cluster(self.settings.contexts.clone()).await
            } else {
                self.join(&first, self.settings.contexts.clone()).await
            };
            match result {
                Ok(()) if founder => {
                    tracing::info!(contexts = ?self.settings.contexts, "founded the cluster (autocluster)");
                    break;
                }
                Ok(()) => {
                    tracing::info!(%first, contexts = ?self.settings.contexts, "joined the cluster (autocluster)");
                    break;
                }
                Err(WriteError::Refused { code, message }) if code == "AXONIQ-2306" => {
                    tracing::info!(%message, "this node is already part of the cluster");
                    break;
                }
                // The first node has not founded the cluster yet: ask again.
                Err(WriteError::Refused { code, message }) if code != "AXONIQ-2307" => {
                    tracing::error!(%code, %message, "autocluster refused; fix the configuration or use ranvierctl");
                    self.set_formation(Some(format!("autocluster through {first} was refused: {code} {message}")));
                    return;
                }
                Err(error) => {
                    tracing::info!(%first, error = error.message(), "forming the cluster; retrying");
                    self.set_formation(Some(format!("{doing}, retrying: {}", error.message())));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                }
            }
        }
        self.set_formation(None);
    }

    pub(super) fn set_formation(&self, doing: Option<String>) {
        *self.formation.lock().unwrap_or_else(|p| p.into_inner()) = doing;
    }

    /// After a restart: when this node's addresses or ports changed since it
    /// registered, registers them again (clients are sent to them).
    pub(super) async fn refresh_registration(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let model = self.model();
            match model.nodes.get(&self.settings.node.name) {
                Some(known) if *known != self.settings.node => {}
                _ => return,
            }
            match self.admin(AdminCommand::RegisterNode(self.settings.node.clone())).await {
                Ok(()) => {
                    tracing::info!("registered this node's new addresses");
                    return;
                }
                Err(WriteError::Refused { code, message }) => {
                    tracing::error!(%code, %message, "could not register this node's new addresses");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                }
            }
        }
    }

    /// Founds the cluster on this node (init-cluster): `_admin` with this
    /// node as its only member, and the given contexts.
    pub async fn init_cluster(&self, contexts: Vec<String>) -> Result<(), WriteError> {
        let admin = self.groups.get(ADMIN).ok_or_else(|| WriteError::Failed("no _admin group".into()))?;
        if self.model().initialized() {
            return Err(WriteError::Refused {
                code: "AXONIQ-2306".into(),
                message: "this node is already a member of a cluster".into(),
            });
        }
        if !admin.is_initialized().await.map_err(|e| WriteError::Failed(e.to_string()))? {
            let members = BTreeMap::from([(self.node_id, Self::member_node(&self.settings.node))]);
            admin.initialize(members).await.map_err(|e| WriteError::Failed(e.to_string()))?;
        }
        let command = AdminCommand::InitCluster { node: self.settings.node.clone(), contexts };
        let proposed = self.propose(ADMIN, GroupCommand::Admin(command), true).await?;
        self.settled(proposed).await
    }

    /// Waits until this node's replica of the model holds an applied admin
    /// change (so the caller reads its own change here), then answers it.
    pub(super) async fn settled(&self, proposed: Proposed) -> Result<(), WriteError> {
        applied(proposed.response)?;
        if let Some(admin) = self.groups.get(ADMIN) {
            let waiter = admin.wait(Some(COMMIT_TIMEOUT));
            if waiter.applied_index_at_least(Some(proposed.index), "the change").await.is_err() {
                let message = "the change was applied, but has not reached this node yet".to_owned();
                return Err(WriteError::Timeout(message));
            }
        }
        Ok(())
    }

    /// Asks the cluster, through the node at internal `addr`, to register
    /// this node as a PRIMARY of `contexts` (register-node).
    pub async fn join(&self, addr: &str, contexts: Vec<String>) -> Result<(), WriteError> {
        if self.model().nodes.contains_key(&self.settings.node.name) {
            return Err(WriteError::Refused {
                code: "AXONIQ-2306".into(),
                message: "this node is already a member of a cluster".into(),
            });
        }
        let command = AdminCommand::JoinCluster { node: self.settings.node.clone(), contexts };
        let proposed = self.forward(addr, &GroupCommand::Admin(command), true).await?;
        applied(proposed.response)
    }

    /// Proposes a change of the cluster model, wherever `_admin` leads.
    pub async fn admin(&self, command: AdminCommand) -> Result<(), WriteError> {
        if !self.model().initialized() {
            return Err(WriteError::Refused {
                code: "AXONIQ-2307".into(),
                message: "this node is not part of an initialised cluster (run init-cluster or register-node)".into(),
            });
        }
        let proposed = self.propose(ADMIN, GroupCommand::Admin(command), true).await?;
        self.settled(proposed).await
    }
}
