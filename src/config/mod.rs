//! Agent configuration: KubeletConfiguration-style file and board profiles.
