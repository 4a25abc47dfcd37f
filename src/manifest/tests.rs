use std::path::{Path, PathBuf};

use super::*;

const NODE: &str = "Pi-1";

const GOOD_YAML: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: nginx:1.27
    resources:
      limits: {cpu: 500m, memory: 64Mi}
      requests: {cpu: 0.1}
    volumeMounts:
    - {name: data, mountPath: /data}
    livenessProbe:
      httpGet: {path: /healthz, port: 80}
  volumes:
  - name: data
    hostPath: {path: /srv/web}
";

fn parse_yaml(text: &str) -> Result<StaticPod, ManifestError> {
    parse_manifest(Path::new("/m/x.yaml"), Format::Yaml, text.as_bytes(), NODE)
}

fn field_of(text: &str) -> (Option<String>, ManifestErrorKind) {
    let e = parse_yaml(text).expect_err("manifest should be rejected");
    assert_eq!(e.file, PathBuf::from("/m/x.yaml"));
    (e.field, e.kind)
}

#[test]
fn good_yaml_gets_static_identity() {
    let sp = parse_yaml(GOOD_YAML).unwrap();
    assert_eq!(sp.pod.metadata.name, "web-pi-1");
    assert_eq!(sp.pod.metadata.namespace, "default");
    assert_eq!(sp.pod.metadata.uid, sp.uid);
    assert_eq!(sp.uid.len(), 32);
    assert!(sp
        .uid
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        sp.pod.metadata.annotations["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(
        sp.pod.metadata.annotations["kubernetes.io/config.hash"],
        sp.uid
    );
    assert_eq!(sp.pod.spec.node_name, NODE);
    assert_eq!(sp.spec_hash, spec_hash(&sp.pod.spec));
    assert_eq!(sp.key(), "default/web-pi-1");
}

#[test]
fn same_pod_as_json_has_the_same_uid() {
    let value: serde_json::Value = serde_yaml_ng::from_str(GOOD_YAML).unwrap();
    let json = serde_json::to_vec_pretty(&value).unwrap();
    let a = parse_yaml(GOOD_YAML).unwrap();
    let b = parse_manifest(Path::new("/m/x.json"), Format::Json, &json, NODE).unwrap();
    assert_eq!(a.uid, b.uid);
    assert_eq!(a.spec_hash, b.spec_hash);
    // An edit changes both.
    let edited = parse_yaml(&GOOD_YAML.replace("nginx:1.27", "nginx:1.28")).unwrap();
    assert_ne!(edited.uid, a.uid);
    assert_ne!(edited.spec_hash, a.spec_hash);
    // A comment does not.
    let commented = parse_yaml(&format!("# note\n{GOOD_YAML}")).unwrap();
    assert_eq!(commented.uid, a.uid);
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = parse_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: [\n").unwrap_err();
    match e.kind {
        ManifestErrorKind::Syntax { line, column, .. } => {
            assert!(line.is_some() && column.is_some())
        }
        k => panic!("{k:?}"),
    }
    let e = parse_manifest(
        Path::new("/m/x.json"),
        Format::Json,
        b"{\n  \"kind\": \"Pod\",\n  oops\n}",
        NODE,
    )
    .unwrap_err();
    assert!(matches!(
        e.kind,
        ManifestErrorKind::Syntax {
            line: Some(3),
            column: Some(3),
            ..
        }
    ));
    assert!(e.to_string().contains("/m/x.json"), "{e}");
    assert!(e.to_string().contains("line 3 column 3"), "{e}");
}

#[test]
fn each_rule_names_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("name: web\n", "name: ''\n", "metadata.name"),
        ("name: web\n", "name: Web_1\n", "metadata.name"),
        (
            "image: nginx:1.27\n",
            "image: ''\n",
            "spec.containers[0].image",
        ),
        (
            "  - name: web\n",
            "  - name: ''\n",
            "spec.containers[0].name",
        ),
        (
            "memory: 64Mi",
            "memory: 64MB",
            "spec.containers[0].resources.limits.memory",
        ),
        (
            "cpu: 0.1",
            "cpu: -1",
            "spec.containers[0].resources.requests.cpu",
        ),
        (
            "  containers:\n",
            "  restartPolicy: Sometimes\n  containers:\n",
            "spec.restartPolicy",
        ),
        (
            "httpGet: {path: /healthz, port: 80}",
            "periodSeconds: 5",
            "spec.containers[0].livenessProbe",
        ),
        (
            "{name: data, mountPath: /data}",
            "{name: dat, mountPath: /data}",
            "spec.containers[0].volumeMounts[0].name",
        ),
        (
            "    image: nginx:1.27\n",
            "    image: nginx:1.27\n    restartPolicy: Always\n",
            "spec.containers[0].restartPolicy",
        ),
        (
            "hostPath: {path: /srv/web}",
            "hostPath: {type: Directory}",
            "spec.volumes[0].hostPath.path",
        ),
    ];
    let api_refs: &[(&str, &str, &str)] = &[
        (
            "hostPath: {path: /srv/web}",
            "configMap: {name: web}",
            "spec.volumes[0].configMap",
        ),
        (
            "hostPath: {path: /srv/web}",
            "secret: {secretName: web}",
            "spec.volumes[0].secret",
        ),
        (
            "hostPath: {path: /srv/web}",
            "projected: {sources: [{downwardAPI: {items: []}}, {serviceAccountToken: {path: token}}]}",
            "spec.volumes[0].projected.sources[1].serviceAccountToken",
        ),
        (
            "    livenessProbe:",
            "    env: [{name: A, value: b}, {name: B, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n    livenessProbe:",
            "spec.containers[0].env[1].valueFrom.secretKeyRef",
        ),
        (
            "    livenessProbe:",
            "    envFrom: [{configMapRef: {name: c}}]\n    livenessProbe:",
            "spec.containers[0].envFrom",
        ),
    ];
    for (from, to, field) in cases.iter().chain(api_refs) {
        assert!(GOOD_YAML.contains(from), "{from}");
        let (f, kind) = field_of(&GOOD_YAML.replacen(from, to, 1));
        assert_eq!(f.as_deref(), Some(*field), "{to}: {kind:?}");
    }
}

#[test]
fn duplicate_container_names_are_rejected() {
    let text = GOOD_YAML.replace(
        "  volumes:\n",
        "  - name: web\n    image: busybox\n  volumes:\n",
    );
    let (f, kind) = field_of(&text);
    assert_eq!(f.as_deref(), Some("spec.containers[1].name"));
    assert_eq!(kind, ManifestErrorKind::Duplicate { name: "web".into() });
    let init = GOOD_YAML.replace(
        "  containers:\n",
        "  initContainers:\n  - {name: web, image: busybox}\n  containers:\n",
    );
    let (f, _) = field_of(&init);
    assert_eq!(f.as_deref(), Some("spec.containers[0].name"));
}

#[test]
fn kind_and_version_are_checked() {
    let (f, k) = field_of(&GOOD_YAML.replace("kind: Pod", "kind: Deployment"));
    assert_eq!(f, None);
    assert!(matches!(k, ManifestErrorKind::UnsupportedKind { .. }));
    let (f, _) = field_of(&GOOD_YAML.replace("kind: Pod\n", ""));
    assert_eq!(f.as_deref(), Some("kind"));
    let (_, k) = field_of(&GOOD_YAML.replace("apiVersion: v1", "apiVersion: apps/v1"));
    assert!(matches!(k, ManifestErrorKind::UnsupportedKind { .. }));
    assert_eq!(field_of("").1, ManifestErrorKind::NotAnObject);
    assert_eq!(field_of("- a\n- b\n").1, ManifestErrorKind::NotAnObject);
}

#[test]
fn wrong_types_name_the_field() {
    let (f, k) = field_of(&GOOD_YAML.replace(
        "livenessProbe:",
        "ports: [{containerPort: eighty}]\n    livenessProbe:",
    ));
    assert_eq!(
        f.as_deref(),
        Some("spec.containers[0].ports[0].containerPort"),
        "{k:?}"
    );
    let json = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i","stdin":"yes"}]}}"#;
    let e = parse_manifest(Path::new("/m/a.json"), Format::Json, json, NODE).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("spec.containers[0].stdin"), "{e}");
}

#[test]
fn load_files_keeps_the_first_of_duplicate_names_and_names_both_files() {
    let other = GOOD_YAML.replace("nginx:1.27", "nginx:1.28");
    let files = vec![
        (PathBuf::from("/m/b.yaml"), other.into_bytes()),
        (PathBuf::from("/m/a.yaml"), GOOD_YAML.as_bytes().to_vec()),
        (PathBuf::from("/m/c.yaml"), b"kind: [".to_vec()),
        (
            PathBuf::from("/m/.hidden.yaml"),
            GOOD_YAML.as_bytes().to_vec(),
        ),
        (PathBuf::from("/m/a.yaml~"), GOOD_YAML.as_bytes().to_vec()),
    ];
    let set = load_files(&files, NODE);
    assert_eq!(set.pods.len(), 1);
    assert_eq!(set.pods[0].file, PathBuf::from("/m/a.yaml"));
    assert_eq!(set.errors.len(), 2);
    let dup = &set.errors[0];
    assert_eq!(dup.file, PathBuf::from("/m/b.yaml"));
    assert!(matches!(
        &dup.kind,
        ManifestErrorKind::DuplicatePod { first_file, .. } if first_file == Path::new("/m/a.yaml")
    ));
    let msg = dup.to_string();
    assert!(
        msg.contains("/m/a.yaml") && msg.contains("/m/b.yaml"),
        "{msg}"
    );
    assert_eq!(set.errors[1].file, PathBuf::from("/m/c.yaml"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let seeds: [&[u8]; 4] = [
        GOOD_YAML.as_bytes(),
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
        b"a: &x [*x, *x]\nb: !!binary aGk=\n",
        b"{{{{[[[[",
    ];
    for round in 0..3000u32 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let seed = seeds[(round as usize) % seeds.len()];
        let mut bytes = seed.to_vec();
        if !bytes.is_empty() {
            let n = (state % 4) as usize + 1;
            for k in 0..n {
                let pos = ((state >> (8 * k)) as usize) % bytes.len();
                bytes[pos] = (state >> (3 * k)) as u8;
            }
            bytes.truncate(((state >> 40) as usize) % (bytes.len() + 1));
        }
        for format in [Format::Yaml, Format::Json] {
            let _ = parse_manifest(Path::new("/m/f"), format, &bytes, NODE);
        }
    }
}
