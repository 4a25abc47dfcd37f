//! The one error type of the CRI client: which call, which object, what went wrong.

use std::fmt;
use std::time::Duration;

/// gRPC status codes (the 17 defined ones, plus any number a peer may invent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    /// 0: success.
    Ok,
    /// 1: cancelled by the caller.
    Cancelled,
    /// 2: the server's catch-all (gRPC's `UNKNOWN`).
    UnknownError,
    /// 3: bad argument.
    InvalidArgument,
    /// 4: deadline passed.
    DeadlineExceeded,
    /// 5: object not found.
    NotFound,
    /// 6: object already exists.
    AlreadyExists,
    /// 7: not allowed.
    PermissionDenied,
    /// 8: out of a resource.
    ResourceExhausted,
    /// 9: system not in a state for this call.
    FailedPrecondition,
    /// 10: aborted (concurrency conflict).
    Aborted,
    /// 11: out of range.
    OutOfRange,
    /// 12: not implemented.
    Unimplemented,
    /// 13: internal error.
    Internal,
    /// 14: service unavailable (retry later).
    Unavailable,
    /// 15: data loss.
    DataLoss,
    /// 16: no valid credentials.
    Unauthenticated,
    /// Any other number.
    Unknown(u32),
}

impl GrpcCode {
    /// Maps a wire number to a code.
    pub fn from_u32(n: u32) -> GrpcCode {
        match n {
            0 => GrpcCode::Ok,
            1 => GrpcCode::Cancelled,
            2 => GrpcCode::UnknownError,
            3 => GrpcCode::InvalidArgument,
            4 => GrpcCode::DeadlineExceeded,
            5 => GrpcCode::NotFound,
            6 => GrpcCode::AlreadyExists,
            7 => GrpcCode::PermissionDenied,
            8 => GrpcCode::ResourceExhausted,
            9 => GrpcCode::FailedPrecondition,
            10 => GrpcCode::Aborted,
            11 => GrpcCode::OutOfRange,
            12 => GrpcCode::Unimplemented,
            13 => GrpcCode::Internal,
            14 => GrpcCode::Unavailable,
            15 => GrpcCode::DataLoss,
            16 => GrpcCode::Unauthenticated,
            other => GrpcCode::Unknown(other),
        }
    }

    /// The wire number of this code.
    pub fn as_u32(self) -> u32 {
        match self {
            GrpcCode::Ok => 0,
            GrpcCode::Cancelled => 1,
            GrpcCode::UnknownError => 2,
            GrpcCode::InvalidArgument => 3,
            GrpcCode::DeadlineExceeded => 4,
            GrpcCode::NotFound => 5,
            GrpcCode::AlreadyExists => 6,
            GrpcCode::PermissionDenied => 7,
            GrpcCode::ResourceExhausted => 8,
            GrpcCode::FailedPrecondition => 9,
            GrpcCode::Aborted => 10,
            GrpcCode::OutOfRange => 11,
            GrpcCode::Unimplemented => 12,
            GrpcCode::Internal => 13,
            GrpcCode::Unavailable => 14,
            GrpcCode::DataLoss => 15,
            GrpcCode::Unauthenticated => 16,
            GrpcCode::Unknown(n) => n,
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcCode::Unknown(n) => write!(f, "code {n}"),
            GrpcCode::UnknownError => f.write_str("Unknown"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// What went wrong, without the call context.
#[derive(Debug)]
pub enum ErrorKind {
    /// The runtime socket could not be reached.
    Connect {
        /// Socket path.
        endpoint: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The runtime answered with a non-OK gRPC status.
    Status {
        /// Status code.
        code: GrpcCode,
        /// Percent-decoded `grpc-message`.
        message: String,
    },
    /// Our local deadline passed before the answer came.
    DeadlineExceeded {
        /// The deadline that was applied.
        timeout: Duration,
    },
    /// The peer broke HTTP/2, gRPC framing or protobuf rules.
    Protocol(String),
    /// A message exceeded the configured maximum size.
    MessageTooLarge {
        /// Announced or actual size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// A failed CRI call.
#[derive(Debug)]
pub struct CriError {
    call: &'static str,
    object: String,
    kind: ErrorKind,
}

impl CriError {
    /// Builds an error for `call` on `object` (may be empty).
    pub fn new(call: &'static str, object: impl Into<String>, kind: ErrorKind) -> CriError {
        CriError {
            call,
            object: object.into(),
            kind,
        }
    }

    /// The RPC name (e.g. "PullImage").
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The object the call was about (image ref, sandbox id, container id).
    pub fn object(&self) -> &str {
        &self.object
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The gRPC status code, when the runtime answered with one.
    pub fn code(&self) -> Option<GrpcCode> {
        match self.kind {
            ErrorKind::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The object does not exist (NotFound status).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(GrpcCode::NotFound)
    }

    /// The runtime could not be reached or asked us to come back later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind, ErrorKind::Connect { .. }) || self.code() == Some(GrpcCode::Unavailable)
    }

    /// The call ran out of time (locally or as reported by the runtime).
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self.kind, ErrorKind::DeadlineExceeded { .. })
            || self.code() == Some(GrpcCode::DeadlineExceeded)
    }
}

impl fmt::Display for CriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CRI {}", self.call)?;
        if !self.object.is_empty() {
            write!(f, " {}", self.object)?;
        }
        match &self.kind {
            ErrorKind::Connect { endpoint, source } => write!(
                f,
                ": cannot connect to {endpoint}: {source} (is containerd running? check \
                 --container-runtime-endpoint)"
            ),
            ErrorKind::Status { code, message } => write!(f, ": {code}: {message}"),
            ErrorKind::DeadlineExceeded { timeout } => {
                write!(f, ": no answer within {} ms", timeout.as_millis())
            }
            ErrorKind::Protocol(what) => write!(f, ": protocol error: {what}"),
            ErrorKind::MessageTooLarge { size, max } => {
                write!(f, ": message of {size} bytes exceeds the {max} byte limit")
            }
        }
    }
}

impl std::error::Error for CriError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for n in 0..40 {
            assert_eq!(GrpcCode::from_u32(n).as_u32(), n);
        }
        assert_eq!(GrpcCode::from_u32(5), GrpcCode::NotFound);
        assert_eq!(GrpcCode::from_u32(16), GrpcCode::Unauthenticated);
        assert_eq!(GrpcCode::from_u32(17), GrpcCode::Unknown(17));
    }

    #[test]
    fn display_names_call_object_and_hint() {
        let e = CriError::new(
            "PullImage",
            "example/img:1",
            ErrorKind::Status {
                code: GrpcCode::NotFound,
                message: "not found".into(),
            },
        );
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "CRI PullImage example/img:1: NotFound: not found"
        );
        let e = CriError::new(
            "Version",
            "",
            ErrorKind::Connect {
                endpoint: "/run/x.sock".into(),
                source: std::io::Error::from_raw_os_error(2),
            },
        );
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("is containerd running?"));
        assert!(e.to_string().contains("/run/x.sock"));
    }
}
