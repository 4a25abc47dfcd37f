//! Trimmed CRI client (runtime.v1) over gRPC/h2c on a unix socket.
