//! The one mapping from errors to gRPC statuses: every error the client API
//! returns carries the `AxonIQ-ErrorCode` metadata that Axon clients read to
//! pick an exception type, with the gRPC code Axon Server uses for it.

use tonic::{Code, Status};

use crate::store::StoreError;

pub use ranvier_wire::ErrorCode;

/// The gRPC status code Axon Server pairs with an error code (PROTOCOL.md
/// §2.11).
pub fn grpc_code(code: ErrorCode) -> Code {
    use ErrorCode::*;
    match code {
        UnsupportedInstruction => Code::Unknown,
        AuthenticationTokenMissing | AuthenticationInvalidToken => Code::PermissionDenied,
        TooManyRequests => Code::ResourceExhausted,
        InvalidSequence => Code::OutOfRange,
        PayloadTooLarge
        | TooManyEvents
        | InvalidPropertyValue
        | InvalidContextName
        | SelectNodesForContext
        | CommandDuplicated
        | QueryDuplicated => Code::InvalidArgument,
        NoEventStore
        | ClientDisconnected
        | NoLeaderAvailable
        | NoSuchNode
        | ContextNotFound
        | NoHandlerForCommand
        | NoHandlerForQuery
        | QueryDispatchError
        | EventProcessorNotFound => Code::NotFound,
        ConnectionToHandlerLost | CommandTimeout | QueryTimeout => Code::Cancelled,
        ContextExists | ReplicationGroupExists | AlreadyMemberOfCluster => Code::AlreadyExists,
        ClusterNotAllowed | CannotDeleteInternalContext | NotAMember => Code::PermissionDenied,
        DatafileReadError | DatafileWriteError | ReplicationTimeout | Other => Code::Cancelled,
    }
}

/// The metadata key of the error code (gRPC keys are lower case on the wire).
pub const ERROR_CODE_KEY: &str = "axoniq-errorcode";

/// A status with the error code trailer.
pub fn status(code: ErrorCode, message: impl Into<String>) -> Status {
    let mut status = Status::new(grpc_code(code), message);
    if let Ok(value) = code.as_str().parse() {
        status.metadata_mut().insert(ERROR_CODE_KEY, value);
    }
    status
}

/// Adds the trailer to a status that tonic or a library produced.
pub fn with_code(mut status: Status, code: ErrorCode) -> Status {
    if !status.metadata().contains_key(ERROR_CODE_KEY)
        && let Ok(value) = code.as_str().parse()
    {
        status.metadata_mut().insert(ERROR_CODE_KEY, value);
    }
    status
}

/// Maps a clustered write's failure.
pub fn from_write(error: &crate::cluster::WriteError) -> Status {
    use crate::cluster::WriteError;
    match error {
        WriteError::Refused { code, message } => {
            let known = [
                ErrorCode::InvalidSequence,
                ErrorCode::NoEventStore,
                ErrorCode::InvalidPropertyValue,
                ErrorCode::PayloadTooLarge,
                ErrorCode::TooManyEvents,
                ErrorCode::DatafileWriteError,
            ];
            let code = known.into_iter().find(|c| c.as_str() == code).unwrap_or(ErrorCode::Other);
            status(code, message.clone())
        }
        WriteError::NoLeader(message) | WriteError::NotLeader(message) | WriteError::Unreached(message) => {
            status(ErrorCode::NoLeaderAvailable, message.clone())
        }
        WriteError::Timeout(message) => status(ErrorCode::ReplicationTimeout, message.clone()),
        WriteError::Failed(message) => status(ErrorCode::DatafileWriteError, message.clone()),
    }
}

/// Maps a store error for a write (`writing`) or a read.
pub fn from_store(error: &StoreError, writing: bool) -> Status {
    let code = match error {
        StoreError::InvalidSequence { .. } => ErrorCode::InvalidSequence,
        StoreError::Malformed { .. } => ErrorCode::InvalidPropertyValue,
        StoreError::TokenGone { .. } => ErrorCode::InvalidPropertyValue,
        StoreError::DiskFull { .. } => ErrorCode::DatafileWriteError,
        _ if writing => ErrorCode::DatafileWriteError,
        _ => ErrorCode::DatafileReadError,
    };
    status(code, error.to_string())
}

/// Adds the error code to error responses that never reached a handler
/// (tonic's own decode errors, unknown services and methods): those are
/// "trailers-only" responses whose `grpc-status` is in the headers.
pub fn add_missing_error_code<B>(mut response: tonic::codegen::http::Response<B>) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
    if let Some(status) = status
        && status != 0
        && !headers.contains_key(ERROR_CODE_KEY)
    {
        let code = if Code::from_i32(status) == Code::Unimplemented {
            ErrorCode::UnsupportedInstruction
        } else {
            ErrorCode::Other
        };
        headers.insert(ERROR_CODE_KEY, tonic::codegen::http::HeaderValue::from_static(code.as_str()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_conflicts_are_out_of_range_with_axoniq_2000() {
        let error = StoreError::InvalidSequence { aggregate_id: "a".into(), sequence: 3, expected: 1 };
        let status = from_store(&error, true);
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.metadata().get(ERROR_CODE_KEY).unwrap(), "AXONIQ-2000");
        assert!(status.message().contains("expected 1"));
    }

    #[test]
    fn an_existing_code_is_kept() {
        let status = with_code(status(ErrorCode::TooManyEvents, "x"), ErrorCode::Other);
        assert_eq!(status.metadata().get(ERROR_CODE_KEY).unwrap(), "AXONIQ-2002");
    }
}
