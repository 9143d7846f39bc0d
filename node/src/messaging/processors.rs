//! Event processors of the applications connected to the cluster: what
//! their clients report on the platform stream (`EventProcessorInfo`), and
//! the instructions an administrator sends them through the REST API or
//! the console (pause, start, split, merge), relayed to the client that
//! runs the processor and answered with its acknowledgement.
//!
//! - **Registry**: each platform stream of this node is one entry (its
//!   client and component, listed for the console by `clients`); its
//!   processors are those it reported last, and they go with the stream.
//! - **Cluster-wide**: a listing asks every other node for its entries
//!   (`ProcessorPeers`); an instruction is decided on the whole picture
//!   (the segments of one processor may be spread over clients on several
//!   nodes) and relayed to the node of the client it is for.
//! - **Instructions**: pause and start go to every instance of the
//!   processor; split goes to the owner of the largest segment; merge goes
//!   to the owner of the smallest segment, after the owner of its sibling
//!   (when another client) released it. Each waits for the client's ack,
//!   at most [`ACK_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ranvier_proto::common::ErrorMessage;
use ranvier_proto::control::platform_outbound_instruction::Request as Outbound;
use ranvier_proto::control::{
    ClientIdentification, EventProcessorInfo, EventProcessorReference, EventProcessorSegmentReference,
    PlatformOutboundInstruction,
};
use ranvier_wire::admin::{InstructedClient, ProcessorInstance, ProcessorInstructed, SegmentListing};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::BoxFuture;

/// Longest wait for a client's acknowledgement of one instruction.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Processors one client may report; more are ignored.
const PROCESSORS_PER_CLIENT_MAX: usize = 1_000;

/// A platform stream of this node.
pub type StreamId = u64;

/// Where instructions for a client's stream go.
pub type Outgoing = mpsc::Sender<Result<PlatformOutboundInstruction, Status>>;

/// Why an instruction was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// No client runs the processor (AXONIQ-2800).
    #[error("{0}")]
    NotFound(String),
    /// The instruction cannot apply (such as merging a processor with one segment).
    #[error("{0}")]
    Invalid(String),
    /// The client answered with an error.
    #[error("client {client} refused: {}", .error.message)]
    Refused {
        /// The client.
        client: String,
        /// Its error.
        error: ErrorMessage,
    },
    /// The client did not acknowledge in time, or went away.
    #[error("{0}")]
    NoAnswer(String),
    /// The client's node could not be reached.
    #[error("{0}")]
    Unreachable(String),
}

/// What an administrator asks of a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop processing.
    Pause,
    /// Start processing.
    Start,
    /// Split the largest segment in two.
    Split,
    /// Merge the smallest segment with its sibling.
    Merge,
}

impl Action {
    /// The action named in the REST path.
    pub fn parse(name: &str) -> Option<Action> {
        match name {
            "pause" => Some(Action::Pause),
            "start" => Some(Action::Start),
            "split" => Some(Action::Split),
            "merge" => Some(Action::Merge),
            _ => None,
        }
    }
}

/// The other nodes' processors and clients.
pub trait ProcessorPeers: Send + Sync {
    /// The other nodes of the cluster.
    fn nodes(&self) -> Vec<String>;
    /// `node`'s processor instances in `context`.
    fn list(&self, node: &str, context: &str) -> BoxFuture<Result<Vec<ProcessorInstance>, String>>;
    /// Relays `instruction` to `client` of `context` on `node` and waits
    /// for its ack.
    fn instruct(
        &self,
        node: &str,
        context: &str,
        client: &str,
        instruction: PlatformOutboundInstruction,
    ) -> BoxFuture<Result<(), ProcessorError>>;
}

struct Client {
    context: String,
    identity: ClientIdentification,
    out: Outgoing,
    processors: HashMap<String, EventProcessorInfo>,
}

#[derive(Default)]
struct State {
    next_stream: StreamId,
    next_instruction: u64,
    clients: HashMap<StreamId, Client>,
    /// Instruction id → the stream it went to, and who waits for its ack.
    pending: HashMap<String, (StreamId, oneshot::Sender<Result<(), ErrorMessage>>)>,
}

/// The processors of this node's clients, and the way to the others.
pub struct Processors {
    node: String,
    state: Mutex<State>,
    peers: Option<Arc<dyn ProcessorPeers>>,
}

impl Processors {
    /// An empty registry on node `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Processors { node: node.into(), state: Mutex::new(State::default()), peers: None }
    }

    /// The same registry, reaching other nodes through `peers`.
    pub fn with_peers(mut self, peers: Arc<dyn ProcessorPeers>) -> Self {
        self.peers = Some(peers);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A platform stream of `context` opened; instructions go to `out`.
    pub fn connect(&self, context: &str, out: Outgoing) -> StreamId {
        let mut state = self.lock();
        state.next_stream += 1;
        let id = state.next_stream;
        let client = Client {
            context: context.to_owned(),
            identity: ClientIdentification::default(),
            out,
            processors: HashMap::new(),
        };
        state.clients.insert(id, client);
        id
    }

    /// The stream's client said who it is.
    pub fn identify(&self, stream: StreamId, identity: ClientIdentification) {
        if let Some(client) = self.lock().clients.get_mut(&stream) {
            client.identity = identity;
        }
    }

    /// The stream's client reported one of its processors.
    pub fn report(&self, stream: StreamId, info: EventProcessorInfo) {
        let mut state = self.lock();
        let Some(client) = state.clients.get_mut(&stream) else { return };
        if client.processors.len() < PROCESSORS_PER_CLIENT_MAX || client.processors.contains_key(&info.processor_name) {
            client.processors.insert(info.processor_name.clone(), info);
        }
    }

    /// A client acknowledged instruction `id` (with its error, if it failed).
    pub fn acknowledged(&self, id: &str, outcome: Result<(), ErrorMessage>) {
        if let Some((_, waiting)) = self.lock().pending.remove(id) {
            let _ = waiting.send(outcome);
        }
    }

    /// The stream ended: its processors go, and instructions waiting for
    /// its acks fail at once.
    pub fn disconnect(&self, stream: StreamId) {
        let mut state = self.lock();
        state.clients.remove(&stream);
        state.pending.retain(|_, (to, _)| *to != stream);
    }

    /// The applications connected to this node in `context`, as (client
    /// id, component), sorted (a stream not yet identified is left out).
    pub fn clients(&self, context: &str) -> Vec<(String, String)> {
        let state = self.lock();
        let mut out: Vec<(String, String)> = state
            .clients
            .values()
            .filter(|c| c.context == context && !c.identity.client_id.is_empty())
            .map(|c| (c.identity.client_id.clone(), c.identity.component_name.clone()))
            .collect();
        out.sort();
        out
    }

    /// This node's processor instances in `context`.
    pub fn local(&self, context: &str) -> Vec<ProcessorInstance> {
        let state = self.lock();
        let mut out: Vec<ProcessorInstance> = state
            .clients
            .values()
            .filter(|c| c.context == context)
            .flat_map(|c| c.processors.values().map(|info| self.instance(c, info)))
            .collect();
        out.sort_by(|a, b| (&a.component, &a.processor, &a.client_id).cmp(&(&b.component, &b.processor, &b.client_id)));
        out
    }

    fn instance(&self, client: &Client, info: &EventProcessorInfo) -> ProcessorInstance {
        ProcessorInstance {
            node: self.node.clone(),
            client_id: client.identity.client_id.clone(),
            component: client.identity.component_name.clone(),
            processor: info.processor_name.clone(),
            token_store_identifier: info.token_store_identifier.clone(),
            mode: info.mode.clone(),
            running: info.running,
            error: info.error,
            active_threads: info.active_threads,
            available_threads: info.available_threads,
            streaming: info.is_streaming_processor,
            segments: info
                .segment_status
                .iter()
                .map(|s| SegmentListing {
                    segment_id: s.segment_id,
                    one_part_of: s.one_part_of,
                    caught_up: s.caught_up,
                    replaying: s.replaying,
                    token_position: s.token_position,
                    error_state: s.error_state.clone(),
                })
                .collect(),
        }
    }

    /// Every processor instance in `context`, on this node and the others
    /// (a node that does not answer within [`ACK_TIMEOUT`] is left out, and
    /// logged).
    pub async fn listing(&self, context: &str) -> Vec<ProcessorInstance> {
        let mut all = self.local(context);
        let Some(peers) = &self.peers else { return all };
        // Every node is asked at once.
        let asks: Vec<_> = peers
            .nodes()
            .into_iter()
            .map(|node| {
                let call = peers.list(&node, context);
                (node, tokio::spawn(tokio::time::timeout(ACK_TIMEOUT, call)))
            })
            .collect();
        for (node, ask) in asks {
            match ask.await {
                Ok(Ok(Ok(instances))) => all.extend(instances),
                Ok(Ok(Err(reason))) => tracing::warn!(%node, %reason, "no processor listing from node"),
                Ok(Err(_)) => tracing::warn!(%node, "no processor listing from node in time"),
                Err(error) => tracing::warn!(%node, %error, "the processor listing task failed"),
            }
        }
        all
    }

    /// Sends `instruction` to this node's client `client` of `context` and
    /// waits for its ack.
    pub async fn instruct_local(
        &self,
        context: &str,
        client: &str,
        mut instruction: PlatformOutboundInstruction,
    ) -> Result<(), ProcessorError> {
        let (out, id, acked) = {
            let mut state = self.lock();
            let Some((stream, target)) =
                state.clients.iter().find(|(_, c)| c.context == context && c.identity.client_id == client)
            else {
                return Err(ProcessorError::NoAnswer(format!("client {client} is not connected to {}", self.node)));
            };
            let (stream, out) = (*stream, target.out.clone());
            state.next_instruction += 1;
            let id = format!("{}-processor-{}", self.node, state.next_instruction);
            let (sender, acked) = oneshot::channel();
            state.pending.insert(id.clone(), (stream, sender));
            (out, id, acked)
        };
        instruction.instruction_id = id.clone();
        let outcome = tokio::time::timeout(ACK_TIMEOUT, async {
            if out.send(Ok(instruction)).await.is_err() {
                return Err(ProcessorError::NoAnswer(format!("client {client} went away")));
            }
            match acked.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(ProcessorError::Refused { client: client.to_owned(), error }),
                Err(_) => Err(ProcessorError::NoAnswer(format!("client {client} went away"))),
            }
        })
        .await;
        self.lock().pending.remove(&id);
        outcome.unwrap_or_else(|_| {
            Err(ProcessorError::NoAnswer(format!(
                "client {client} did not acknowledge within {} s",
                ACK_TIMEOUT.as_secs()
            )))
        })
    }

    /// Relays `instruction` to `client`, on this node or `node`.
    async fn instruct(
        &self,
        node: &str,
        context: &str,
        client: &str,
        instruction: PlatformOutboundInstruction,
    ) -> Result<(), ProcessorError> {
        if node == self.node {
            return self.instruct_local(context, client, instruction).await;
        }
        let Some(peers) = &self.peers else {
            return Err(ProcessorError::Unreachable(format!("node {node} cannot be reached")));
        };
        peers.instruct(node, context, client, instruction).await
    }

    /// Carries out `action` on processor `processor` of `component` in
    /// `context` (only the instances with `token_store`, when given).
    pub async fn apply(
        self: &Arc<Self>,
        context: &str,
        component: &str,
        processor: &str,
        token_store: Option<&str>,
        action: Action,
    ) -> Result<ProcessorInstructed, ProcessorError> {
        let instances: Vec<ProcessorInstance> = self
            .listing(context)
            .await
            .into_iter()
            .filter(|i| i.component == component && i.processor == processor)
            .filter(|i| token_store.is_none_or(|t| i.token_store_identifier == t))
            .collect();
        if instances.is_empty() {
            return Err(ProcessorError::NotFound(format!(
                "no client of component {component} in context {context} runs event processor {processor}"
            )));
        }
        let mut done = ProcessorInstructed::default();
        // Stages in order; the clients of one stage are instructed at once.
        for stage in plan(&instances, action)? {
            let calls: Vec<_> = stage
                .into_iter()
                .map(|(instance, step)| {
                    let processors = self.clone();
                    let (context, processor) = (context.to_owned(), processor.to_owned());
                    let (node, client) = (instance.node.clone(), instance.client_id.clone());
                    tokio::spawn(async move {
                        let instruction = PlatformOutboundInstruction {
                            instruction_id: String::new(),
                            request: Some(step.request(&processor)),
                        };
                        processors.instruct(&node, &context, &client, instruction).await?;
                        let segment = step.segment();
                        Ok(InstructedClient { node, client_id: client, instruction: step.name().to_owned(), segment })
                    })
                })
                .collect();
            let mut failure = None;
            for call in calls {
                match call.await {
                    Ok(Ok(instructed)) => done.instructed.push(instructed),
                    Ok(Err(error)) => failure = failure.or(Some(error)),
                    Err(error) => failure = failure.or(Some(ProcessorError::NoAnswer(error.to_string()))),
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
        }
        Ok(done)
    }
}

/// Instructions that go out together.
type Stage<'a> = Vec<(&'a ProcessorInstance, Step)>;

/// One instruction for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Pause,
    Start,
    Split(i32),
    Merge(i32),
    Release(i32),
}

impl Step {
    fn request(self, processor: &str) -> Outbound {
        let whole = || EventProcessorReference { processor_name: processor.to_owned() };
        let segment =
            |id| EventProcessorSegmentReference { processor_name: processor.to_owned(), segment_identifier: id };
        match self {
            Step::Pause => Outbound::PauseEventProcessor(whole()),
            Step::Start => Outbound::StartEventProcessor(whole()),
            Step::Split(id) => Outbound::SplitEventProcessorSegment(segment(id)),
            Step::Merge(id) => Outbound::MergeEventProcessorSegment(segment(id)),
            Step::Release(id) => Outbound::ReleaseSegment(segment(id)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Step::Pause => "pause",
            Step::Start => "start",
            Step::Split(_) => "split",
            Step::Merge(_) => "merge",
            Step::Release(_) => "release",
        }
    }

    fn segment(self) -> Option<i32> {
        match self {
            Step::Pause | Step::Start => None,
            Step::Split(id) | Step::Merge(id) | Step::Release(id) => Some(id),
        }
    }
}

/// The segment that merges with `segment` of 1/`one_part_of` (they were
/// split from one parent).
fn sibling(segment: i32, one_part_of: i32) -> i32 {
    let half = one_part_of / 2;
    let parent_mask = half - 1;
    let first = segment & parent_mask;
    if segment == first { segment + half } else { first }
}

/// The instructions `action` takes over `instances` of one processor: in
/// stages, in order; the instructions of one stage go out together.
fn plan(instances: &[ProcessorInstance], action: Action) -> Result<Vec<Stage<'_>>, ProcessorError> {
    let segments = || instances.iter().flat_map(|i| i.segments.iter().map(move |s| (i, s)));
    match action {
        Action::Pause => Ok(vec![instances.iter().map(|i| (i, Step::Pause)).collect()]),
        Action::Start => Ok(vec![instances.iter().map(|i| (i, Step::Start)).collect()]),
        Action::Split => {
            // The largest part: the smallest `one_part_of`, then the lowest id.
            let (owner, largest) = segments().min_by_key(|(_, s)| (s.one_part_of, s.segment_id)).ok_or_else(|| {
                ProcessorError::Invalid("no instance of the processor holds a segment to split".into())
            })?;
            Ok(vec![vec![(owner, Step::Split(largest.segment_id))]])
        }
        Action::Merge => {
            let (owner, smallest) =
                segments().max_by_key(|(_, s)| (s.one_part_of, -s.segment_id)).ok_or_else(|| {
                    ProcessorError::Invalid("no instance of the processor holds a segment to merge".into())
                })?;
            if smallest.one_part_of < 2 {
                return Err(ProcessorError::Invalid("the processor has one segment: there is nothing to merge".into()));
            }
            let other = sibling(smallest.segment_id, smallest.one_part_of);
            let mut stages = Vec::new();
            if let Some((holder, _)) = segments().find(|(i, s)| s.segment_id == other && i.client_id != owner.client_id)
            {
                stages.push(vec![(holder, Step::Release(other))]);
            }
            stages.push(vec![(owner, Step::Merge(smallest.segment_id))]);
            Ok(stages)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn instance(client: &str, segments: &[(i32, i32)]) -> ProcessorInstance {
        ProcessorInstance {
            node: "n1".into(),
            client_id: client.into(),
            component: "app".into(),
            processor: "p".into(),
            segments: segments
                .iter()
                .map(|&(segment_id, one_part_of)| SegmentListing { segment_id, one_part_of, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn siblings_are_the_halves_of_one_parent() {
        assert_eq!(sibling(0, 2), 1);
        assert_eq!(sibling(1, 2), 0);
        assert_eq!(sibling(1, 4), 3);
        assert_eq!(sibling(3, 4), 1);
        assert_eq!(sibling(2, 4), 0);
        assert_eq!(sibling(6, 8), 2);
    }

    #[test]
    fn split_takes_the_largest_segment_and_merge_the_smallest_with_its_sibling_released_first() {
        let a = instance("a", &[(0, 2)]);
        let b = instance("b", &[(1, 4), (3, 4)]);
        let both = [a.clone(), b.clone()];
        let split = plan(&both, Action::Split).unwrap().concat();
        assert_eq!(split.len(), 1);
        assert_eq!((split[0].0.client_id.as_str(), split[0].1), ("a", Step::Split(0)));

        // Segments 1 and 3 (of 4) are siblings held by one client: one merge.
        let merge = plan(&both, Action::Merge).unwrap().concat();
        assert_eq!(merge.iter().map(|(i, s)| (i.client_id.as_str(), *s)).collect::<Vec<_>>(), [("b", Step::Merge(1))]);

        // Held by two clients: the other releases its half first.
        let c = instance("c", &[(3, 4)]);
        let d = instance("d", &[(1, 4)]);
        let spread = [a, c, d];
        let merge = plan(&spread, Action::Merge).unwrap();
        assert_eq!(merge.len(), 2, "the release is done before the merge starts");
        let merge = merge.concat();
        assert_eq!(
            merge.iter().map(|(i, s)| (i.client_id.as_str(), *s)).collect::<Vec<_>>(),
            [("c", Step::Release(3)), ("d", Step::Merge(1))]
        );
    }

    #[test]
    fn merging_one_segment_or_splitting_none_is_refused() {
        let whole = instance("a", &[(0, 1)]);
        assert!(matches!(plan(&[whole], Action::Merge), Err(ProcessorError::Invalid(_))));
        let idle = instance("a", &[]);
        assert!(matches!(plan(&[idle], Action::Split), Err(ProcessorError::Invalid(_))));
    }

    #[tokio::test]
    async fn an_instruction_waits_for_the_clients_ack_and_carries_its_error() {
        let processors = Arc::new(Processors::new("n1"));
        let (out, mut received) = mpsc::channel(4);
        let stream = processors.connect("default", out);
        processors.identify(
            stream,
            ClientIdentification { client_id: "c1".into(), component_name: "app".into(), ..Default::default() },
        );
        processors.report(stream, EventProcessorInfo { processor_name: "p".into(), ..Default::default() });
        assert_eq!(processors.local("default").len(), 1);
        assert!(processors.local("other").is_empty());

        let client = {
            let processors = processors.clone();
            tokio::spawn(async move {
                let first = received.recv().await.unwrap().unwrap();
                assert!(matches!(first.request, Some(Outbound::PauseEventProcessor(_))));
                processors.acknowledged(&first.instruction_id, Ok(()));
                let second = received.recv().await.unwrap().unwrap();
                let error = ErrorMessage { message: "busy".into(), error_code: "APP-1".into(), ..Default::default() };
                processors.acknowledged(&second.instruction_id, Err(error));
            })
        };
        let done = processors.apply("default", "app", "p", None, Action::Pause).await.unwrap();
        assert_eq!(done.instructed[0].instruction, "pause");
        let refused = processors.apply("default", "app", "p", None, Action::Start).await;
        assert!(
            matches!(refused, Err(ProcessorError::Refused { ref error, .. }) if error.message == "busy"),
            "{refused:?}"
        );
        client.await.unwrap();

        processors.disconnect(stream);
        let gone = processors.apply("default", "app", "p", None, Action::Pause).await;
        assert!(matches!(gone, Err(ProcessorError::NotFound(_))));
    }
}
