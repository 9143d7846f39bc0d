//! Messaging: Ranvier as a message router for commands (and, to come,
//! queries), per context. `commands` is the command bus of this node
//! (subscriptions, routing by a weighted consistent-hash `ring`, permits,
//! bounded queues, one answer per dispatch); the client API's
//! CommandService (`api::grpc::command`) speaks the Axon protocol on top of
//! it. Routing across the cluster (a handler on another node) comes next,
//! over the node's `transport`.

/// What a handler's stream sends next.
#[derive(Debug)]
pub enum Next<T> {
    /// This message (a permit was used for it).
    Send(Box<T>),
    /// Nothing now: wait to be woken.
    Wait,
    /// The handler is gone.
    Closed,
}

pub mod commands;
pub mod peers;
pub mod queries;
pub mod ring;
pub mod subscriptions;
