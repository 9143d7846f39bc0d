//! Fetching stored transactions from another node's stores over the
//! internal API: a replica installing a snapshot copies the events the
//! snapshot stands for from a member that has them.

use super::*;

/// Fetches stored transactions from another node's stores over the
/// internal API, for a replica installing a snapshot.
pub(super) struct GrpcSource {
    pub(super) address: String,
    pub(super) transport: Arc<Transport>,
}

impl crate::raft::state_machine::TransactionSource for GrpcSource {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn fetch(
        &self,
        addr: String,
        context: String,
        snapshots: bool,
        from: u64,
    ) -> crate::raft::state_machine::TransactionStream {
        use tokio_stream::StreamExt;
        let client = self.transport.cluster_client(&addr);
        let request = self.transport.request(FetchRequest {
            context,
            snapshots,
            from_token: from,
            to_token: 0,
            local_only: false,
        });
        let stream = async_stream_of(client, request, addr);
        Box::pin(stream.map(|chunk| {
            chunk.map(|chunk: TransactionChunk| chunk.events.into_iter().zip(chunk.log_indexes).collect())
        }))
    }
}

pub(super) type ClusterClient =
    ranvier_proto::cluster::cluster_service_client::ClusterServiceClient<tonic::transport::Channel>;

/// The chunks of one FetchTransactions call, errors as text.
pub(super) fn async_stream_of(
    client: Result<ClusterClient, BadAddress>,
    request: Request<FetchRequest>,
    addr: String,
) -> impl tokio_stream::Stream<Item = Result<TransactionChunk, String>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let failed = |e: String| format!("fetching from {addr}: {e}");
        let mut client = match client {
            Ok(client) => client,
            Err(error) => {
                let _ = sender.send(Err(failed(error.to_string()))).await;
                return;
            }
        };
        let context = request.get_ref().context.clone();
        let mut stream = match client.fetch_transactions(request).await {
            Ok(response) => response.into_inner(),
            // The source no longer stores the context (it was deleted): nothing to copy.
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::warn!(%context, %addr, "the snapshot's source no longer stores the context; skipping it");
                return;
            }
            Err(status) => {
                let _ = sender.send(Err(failed(status.message().to_owned()))).await;
                return;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    if sender.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(status) => {
                    let _ = sender.send(Err(failed(status.message().to_owned()))).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
