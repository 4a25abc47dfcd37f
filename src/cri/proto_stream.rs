//! CRI `runtime.v1` streaming requests: `Exec`, `Attach`, `PortForward`. Each answers with the
//! URL of the runtime's own streaming server, which the kubelet API then proxies to.
//!
//! Field numbers are those of kubernetes/cri-api `pkg/apis/runtime/v1/api.proto`; the golden
//! tests below pin them. Data only, no I/O.

/// Exec request: run `cmd` in a container with the chosen streams.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Command and arguments.
    #[prost(string, repeated, tag = "2")]
    pub cmd: Vec<String>,
    /// Run in a TTY (stdout and stderr are then one stream).
    #[prost(bool, tag = "3")]
    pub tty: bool,
    #[prost(bool, tag = "4")]
    pub stdin: bool,
    #[prost(bool, tag = "5")]
    pub stdout: bool,
    #[prost(bool, tag = "6")]
    pub stderr: bool,
}

/// Exec response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecResponse {
    /// Fully qualified URL of the streaming server.
    #[prost(string, tag = "1")]
    pub url: String,
}

/// Attach request: join a running container's streams (note the field order differs from
/// Exec: stdin before tty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttachRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(bool, tag = "2")]
    pub stdin: bool,
    /// Must match the container's own TTY setting.
    #[prost(bool, tag = "3")]
    pub tty: bool,
    #[prost(bool, tag = "4")]
    pub stdout: bool,
    #[prost(bool, tag = "5")]
    pub stderr: bool,
}

/// Attach response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttachResponse {
    /// Fully qualified URL of the streaming server.
    #[prost(string, tag = "1")]
    pub url: String,
}

/// PortForward request: forward ports of a pod sandbox's network namespace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PortForwardRequest {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Ports (the client may name more in the stream itself).
    #[prost(int32, repeated, tag = "2")]
    pub port: Vec<i32>,
}

/// PortForward response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PortForwardResponse {
    /// Fully qualified URL of the streaming server.
    #[prost(string, tag = "1")]
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn exec_fields_are_upstream_tags() {
        let req = ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: true,
        };
        // 1:"c" 2:"sh" 3:1 4:1 5:1 6:1
        assert_eq!(
            req.encode_to_vec(),
            [0x0a, 1, b'c', 0x12, 2, b's', b'h', 0x18, 1, 0x20, 1, 0x28, 1, 0x30, 1]
        );
    }

    #[test]
    fn attach_has_stdin_before_tty() {
        let req = AttachRequest {
            container_id: String::new(),
            stdin: true,
            tty: false,
            stdout: false,
            stderr: true,
        };
        assert_eq!(req.encode_to_vec(), [0x10, 1, 0x28, 1]);
    }

    #[test]
    fn port_forward_ports_are_packed_int32_and_urls_decode() {
        let req = PortForwardRequest {
            pod_sandbox_id: "s".into(),
            port: vec![80, 8080],
        };
        assert_eq!(
            req.encode_to_vec(),
            [0x0a, 1, b's', 0x12, 3, 80, 0x90, 0x3f]
        );
        let url = b"\x0a\x05http:";
        assert_eq!(ExecResponse::decode(&url[..]).unwrap().url, "http:");
        assert_eq!(AttachResponse::decode(&url[..]).unwrap().url, "http:");
        assert_eq!(PortForwardResponse::decode(&url[..]).unwrap().url, "http:");
    }
}
