//! Static pod manifests: loading YAML/JSON files, static pod names and UIDs.
