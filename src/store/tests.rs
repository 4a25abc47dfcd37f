//! Store behaviour on the real filesystem, golden record bytes, and exhaustive power cuts on
//! the simulated disk.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::fault::{PowerLoss, SimFs};
use super::*;

/// A fresh directory under target/ (a real disk, so fsync is real), removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("store-unit")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
    fn store(&self) -> PathBuf {
        self.0.join("store")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn put_get_delete_list_and_reopen() {
    let t = TestDir::new("basic");
    let mut s = Store::open(t.store()).unwrap();
    assert!(s.is_empty());
    assert_eq!(
        s.put(RecordKind::StaticPod, "web", b"{\"v\":1}").unwrap(),
        PutOutcome::Written
    );
    s.put(RecordKind::ApiPod, "default/nginx", b"{\"v\":2}")
        .unwrap();
    s.put(RecordKind::ApiPod, "default/a", b"{}").unwrap();
    assert_eq!(
        s.get(RecordKind::StaticPod, "web").unwrap().unwrap(),
        b"{\"v\":1}"
    );
    assert_eq!(s.get(RecordKind::StaticPod, "default/a").unwrap(), None);
    assert_eq!(
        s.keys(RecordKind::ApiPod),
        vec!["default/a".to_string(), "default/nginx".to_string()]
    );
    assert_eq!(
        s.hash(RecordKind::ApiPod, "default/a"),
        Some(content_hash(b"{}"))
    );
    assert!(s.delete(RecordKind::ApiPod, "default/a").unwrap());
    assert!(!s.delete(RecordKind::ApiPod, "default/a").unwrap());
    drop(s);

    let mut s = Store::open(t.store()).unwrap();
    assert_eq!(s.recovery().loaded, 2);
    assert_eq!(
        s.list(RecordKind::ApiPod).unwrap(),
        vec![("default/nginx".to_string(), b"{\"v\":2}".to_vec())]
    );
    assert_eq!(
        s.list(RecordKind::StaticPod).unwrap(),
        vec![("web".to_string(), b"{\"v\":1}".to_vec())]
    );
    assert_eq!(s.stats(), StoreStats::default());
}

#[test]
fn files_are_private() {
    let t = TestDir::new("perms");
    let mut s = Store::open(t.store()).unwrap();
    s.put(RecordKind::ApiPod, "ns/p", b"secret").unwrap();
    assert_eq!(mode(&t.store()), 0o700);
    assert_eq!(mode(&t.store().join("quarantine")), 0o700);
    assert_eq!(mode(&t.store().join("api.ns%2Fp.rec")), 0o600);
    assert_eq!(mode(&t.store().join("lock")), 0o600);
}

#[test]
fn identical_put_writes_nothing() {
    let t = TestDir::new("steady");
    let mut s = Store::open(t.store()).unwrap();
    let pod = vec![b'x'; 50_000];
    s.put(RecordKind::ApiPod, "ns/p", &pod).unwrap();
    let after_first = s.stats();
    assert_eq!(after_first.files_written, 1);
    assert!(after_first.bytes_written > 50_000);
    for _ in 0..100 {
        assert_eq!(
            s.put(RecordKind::ApiPod, "ns/p", &pod).unwrap(),
            PutOutcome::Unchanged
        );
    }
    assert_eq!(s.stats(), after_first, "steady state must write 0 bytes");
    // Deleting what is absent writes nothing either.
    assert!(!s.delete(RecordKind::StaticPod, "ns/p").unwrap());
    assert_eq!(s.stats(), after_first);
    // A changed value of the same length is written.
    let mut changed = pod.clone();
    changed[25_000] = b'y';
    assert_eq!(
        s.put(RecordKind::ApiPod, "ns/p", &changed).unwrap(),
        PutOutcome::Written
    );
    assert_eq!(s.get(RecordKind::ApiPod, "ns/p").unwrap().unwrap(), changed);
}

#[test]
fn recovery_removes_temps_and_quarantines_damage() {
    let t = TestDir::new("recover");
    let dir = t.store();
    let mut s = Store::open(&dir).unwrap();
    s.put(RecordKind::StaticPod, "good", b"good").unwrap();
    s.put(RecordKind::StaticPod, "torn", b"will be torn")
        .unwrap();
    s.put(RecordKind::StaticPod, "moved", b"moved").unwrap();
    drop(s);
    // A torn record, a leftover temporary file, a record under the wrong name, garbage.
    let torn = std::fs::read(dir.join("static.torn.rec")).unwrap();
    std::fs::write(dir.join("static.torn.rec"), &torn[..torn.len() - 3]).unwrap();
    std::fs::write(dir.join("static.new.rec.tmp"), b"half").unwrap();
    std::fs::rename(dir.join("static.moved.rec"), dir.join("static.other.rec")).unwrap();
    std::fs::write(dir.join("api.junk.rec"), b"\0\0\0\0").unwrap();
    // A name clash in quarantine gets a suffix, never an overwrite.
    std::fs::write(dir.join("quarantine").join("api.junk.rec"), b"older").unwrap();
    std::fs::write(dir.join("README"), b"not ours").unwrap();

    let mut s = Store::open(&dir).unwrap();
    let r = s.recovery().clone();
    assert_eq!(r.loaded, 1);
    assert_eq!(r.removed_temps, vec!["static.new.rec.tmp".to_string()]);
    let q: Vec<(&str, &str)> = r
        .quarantined
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        q,
        vec![
            ("api.junk.rec", "api.junk.rec.1"),
            ("static.other.rec", "static.other.rec"),
            ("static.torn.rec", "static.torn.rec"),
        ]
    );
    assert!(
        r.quarantined[2].2.contains("truncated"),
        "{:?}",
        r.quarantined
    );
    assert!(r.quarantined[1].2.contains("belongs in static.moved.rec"));
    assert_eq!(
        s.get(RecordKind::StaticPod, "good").unwrap().unwrap(),
        b"good"
    );
    assert_eq!(s.keys(RecordKind::StaticPod), vec!["good".to_string()]);
    assert_eq!(
        std::fs::read(dir.join("quarantine").join("api.junk.rec")).unwrap(),
        b"older"
    );
    assert!(dir.join("README").exists(), "unknown files are left alone");
    drop(s);
    let s = Store::open(&dir).unwrap();
    assert!(s.recovery().quarantined.is_empty() && s.recovery().removed_temps.is_empty());
}

#[test]
fn refuses_open_directory_and_non_directory() {
    let t = TestDir::new("refuse");
    let dir = t.store();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Store::open(&dir).unwrap_err();
    assert!(matches!(&err, StoreError::Permissions { path, .. } if *path == dir));
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("0755"),
        "{msg}"
    );

    let file = t.0.join("plain");
    std::fs::write(&file, b"").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn second_opener_is_locked_out() {
    let t = TestDir::new("lock");
    let _first = Store::open(t.store()).unwrap();
    let err = Store::open(t.store()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn invalid_puts_are_refused_and_named() {
    let t = TestDir::new("invalid");
    let mut s = Store::open(t.store()).unwrap();
    let err = s.put(RecordKind::ApiPod, "", b"x").unwrap_err();
    assert!(err.to_string().contains("api record \"\""), "{err}");
    let big = vec![0u8; record::MAX_VALUE_LEN + 1];
    assert!(matches!(
        s.put(RecordKind::ApiPod, "k", &big),
        Err(StoreError::InvalidRecord { .. })
    ));
    assert_eq!(s.stats(), StoreStats::default());
}

#[test]
fn corrupt_record_after_open_is_an_error_naming_the_file() {
    let t = TestDir::new("getcorrupt");
    let mut s = Store::open(t.store()).unwrap();
    s.put(RecordKind::StaticPod, "p", b"value").unwrap();
    let path = t.store().join("static.p.rec");
    let mut b = std::fs::read(&path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    std::fs::write(&path, &b).unwrap();
    let err = s.get(RecordKind::StaticPod, "p").unwrap_err();
    assert!(err.to_string().contains("static.p.rec"), "{err}");
    // A put of the same value is not skipped when the stored copy is damaged: it repairs it.
    assert_eq!(
        s.put(RecordKind::StaticPod, "p", b"value").unwrap(),
        PutOutcome::Written
    );
    assert_eq!(
        s.get(RecordKind::StaticPod, "p").unwrap().unwrap(),
        b"value"
    );
}

// ---- golden bytes ----

fn golden_records() -> Vec<(&'static str, Record)> {
    vec![
        (
            "static_pod.bin",
            Record::new(
                RecordKind::StaticPod,
                "kube-system/etcd-node1",
                br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"etcd","namespace":"kube-system"}}"#.to_vec(),
            ),
        ),
        (
            "api_pod.bin",
            Record::new(
                RecordKind::ApiPod,
                "0f8d2a4e-5b1c-4e7a-9c3d-2b6f1e8a7d90",
                br#"{"metadata":{"uid":"0f8d2a4e-5b1c-4e7a-9c3d-2b6f1e8a7d90"}}"#.to_vec(),
            ),
        ),
        ("empty_value.bin", Record::new(RecordKind::ApiPod, "ns/empty", Vec::new())),
        (
            "unknown_kind.bin",
            Record::new(RecordKind::Unknown(42), "future", vec![0u8, 1, 2, 255]),
        ),
    ]
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/store")
        .join(name)
}

/// Set TINYLET_BLESS=1 to rewrite the golden files after a deliberate format change (and bump
/// the format version).
#[test]
fn golden_files_match_encoder_and_decoder() {
    let bless = std::env::var_os("TINYLET_BLESS").is_some();
    for (name, rec) in golden_records() {
        let bytes = rec.encode().unwrap();
        let path = golden_path(name);
        if bless {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes,
            golden,
            "encoder output differs from {}",
            path.display()
        );
        assert_eq!(Record::decode(&golden).unwrap(), rec, "{name}");
    }
}

#[test]
fn golden_static_pod_header_fields() {
    let golden = std::fs::read(golden_path("static_pod.bin")).unwrap();
    assert_eq!(&golden[..4], b"TLSR");
    assert_eq!(&golden[4..6], &[0, 1]);
    assert_eq!(&golden[6..8], &[0, 0]);
    let len = u32::from_be_bytes(golden[8..12].try_into().unwrap()) as usize;
    assert_eq!(len + 16, golden.len());
    // CBOR array(4), kind 1, then the key as a text string of 22 bytes.
    assert_eq!(&golden[16..19], &[0x84, 0x01, 0x76]);
}

#[test]
fn every_flipped_byte_and_bit_of_goldens_is_rejected() {
    for (name, _) in golden_records() {
        let golden = std::fs::read(golden_path(name)).unwrap();
        for i in 0..golden.len() {
            for mask in [0xFFu8, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
                let mut b = golden.clone();
                b[i] ^= mask;
                assert!(
                    Record::decode(&b).is_err(),
                    "{name}: byte {i} ^ {mask:#04x} accepted"
                );
            }
        }
    }
}

// ---- power cuts on the simulated disk ----

const SIM_DIR: &str = "/sim/store";

#[derive(Debug, Clone)]
enum Op {
    Put(RecordKind, &'static str, Vec<u8>),
    Delete(RecordKind, &'static str),
}

type Model = BTreeMap<(RecordKind, String), Vec<u8>>;

fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Put(k, key, v) => {
            model.insert((*k, key.to_string()), v.clone());
        }
        Op::Delete(k, key) => {
            model.remove(&(*k, key.to_string()));
        }
    }
}

/// A key too long to spell out, so its file has a hashed name.
const LONG_KEY: &str = "a-namespace-name-that-is-long/a-pod-name-that-is-also-quite-long-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789";

fn script() -> Vec<Op> {
    use RecordKind::{ApiPod, StaticPod};
    vec![
        Op::Put(StaticPod, "a", b"{\"a\":1}".to_vec()),
        Op::Put(StaticPod, "b", b"{\"b\":1}".to_vec()),
        Op::Put(StaticPod, "a", b"{\"a\":2,\"x\":\"longer\"}".to_vec()),
        Op::Put(StaticPod, "a", b"{\"a\":2,\"x\":\"longer\"}".to_vec()),
        Op::Delete(StaticPod, "b"),
        Op::Put(ApiPod, "ns/p", b"{}".to_vec()),
        Op::Delete(StaticPod, "seed"),
        Op::Put(StaticPod, "b", b"{\"b\":2}".to_vec()),
        Op::Delete(StaticPod, "never"),
        Op::Put(ApiPod, "ns/p", b"{\"p\":3}".to_vec()),
        Op::Put(ApiPod, LONG_KEY, b"{\"long\":1}".to_vec()),
        Op::Put(ApiPod, LONG_KEY, b"{\"long\":2}".to_vec()),
    ]
}

/// A disk as a previous run left it: one good record, one damaged, one unfinished write.
fn seeded_disk() -> (SimFs, Model) {
    let mut fs = SimFs::new();
    let dir = Path::new(SIM_DIR);
    let seed = Record::new(RecordKind::StaticPod, "seed", b"{\"seed\":0}".to_vec());
    fs.plant(&dir.join("static.seed.rec"), &seed.encode().unwrap());
    fs.plant(&dir.join("api.bad.rec"), b"TLSR\0\x01\0\0garbage");
    fs.plant(&dir.join("static.a.rec.tmp"), b"TLSR");
    let mut model = Model::new();
    model.insert(
        (RecordKind::StaticPod, "seed".into()),
        b"{\"seed\":0}".to_vec(),
    );
    (fs, model)
}

/// Runs open + script until the power goes; returns the acknowledged model and the op that
/// was in flight (None if the cut came during open or never).
fn run_until_cut(fs: &mut SimFs, initial: &Model) -> (Model, Option<Op>) {
    let mut model = initial.clone();
    let Ok(mut s) = Store::open_with(&mut *fs, SIM_DIR) else {
        return (model, None);
    };
    for op in script() {
        let res = match &op {
            Op::Put(k, key, v) => s.put(*k, key, v).map(|_| ()),
            Op::Delete(k, key) => s.delete(*k, key).map(|_| ()),
        };
        match res {
            Ok(()) => apply(&mut model, &op),
            Err(_) => return (model, Some(op)),
        }
    }
    (model, None)
}

/// Opens the rebooted disk and checks it against what was acknowledged.
fn check_after_reboot(disk: &mut SimFs, acked: &Model, in_flight: &Option<Op>, ctx: &str) {
    let mut s = Store::open_with(&mut *disk, SIM_DIR)
        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
    let mut with_flight = acked.clone();
    if let Some(op) = in_flight {
        apply(&mut with_flight, op);
    }
    let mut keys: Vec<(RecordKind, String)> = acked.keys().cloned().collect();
    keys.extend(with_flight.keys().cloned());
    keys.push((RecordKind::StaticPod, "a".into()));
    keys.push((RecordKind::StaticPod, "b".into()));
    keys.push((RecordKind::ApiPod, LONG_KEY.into()));
    keys.sort();
    keys.dedup();
    for (kind, key) in &keys {
        let got = s
            .get(*kind, key)
            .unwrap_or_else(|e| panic!("{ctx}: get {kind}/{key}: {e}"));
        let old = acked.get(&(*kind, key.clone()));
        let new = with_flight.get(&(*kind, key.clone()));
        assert!(
            got.as_ref() == old || got.as_ref() == new,
            "{ctx}: {kind}/{key} = {:?}, acknowledged {:?}, in flight {:?}",
            got.map(|v| String::from_utf8_lossy(&v).into_owned()),
            old.map(|v| String::from_utf8_lossy(v).into_owned()),
            new.map(|v| String::from_utf8_lossy(v).into_owned()),
        );
    }
    // Nothing appears that was never written.
    for kind in [RecordKind::StaticPod, RecordKind::ApiPod] {
        for key in s.keys(kind) {
            assert!(
                with_flight.contains_key(&(kind, key.clone()))
                    || acked.contains_key(&(kind, key.clone())),
                "{ctx}: unexpected record {kind}/{key}"
            );
        }
    }
    drop(s);
    let names = disk.names(Path::new(SIM_DIR));
    assert!(
        names.iter().all(|n| !n.ends_with(".tmp")),
        "{ctx}: temporary file survived recovery: {names:?}"
    );
    // Only the damaged file planted before the run may ever be quarantined.
    for q in disk.names(&Path::new(SIM_DIR).join("quarantine")) {
        assert!(q.starts_with("api.bad.rec"), "{ctx}: quarantined {q}");
    }
}

#[test]
fn power_cut_at_every_step_keeps_acknowledged_writes() {
    assert!(layout::record_file_name(RecordKind::ApiPod, LONG_KEY).contains('~'));
    let (base, initial) = seeded_disk();
    let mut probe = base.clone();
    let (full, none) = run_until_cut(&mut probe, &initial);
    assert!(none.is_none());
    let total = probe.steps();
    let mut expected = initial.clone();
    for op in script() {
        apply(&mut expected, &op);
    }
    assert_eq!(full, expected);
    assert!(
        total > 200,
        "the workload should have many crash points, has {total}"
    );

    let mut reboots = 0u64;
    for cut in 0..=total {
        let mut fs = base.clone();
        fs.set_budget(Some(cut));
        let (acked, in_flight) = run_until_cut(&mut fs, &initial);
        for how in PowerLoss::ALL {
            let rebooted = fs.after_power_loss(how);
            let ctx = format!("cut at step {cut}/{total}, {how:?}, in flight {in_flight:?}");
            let mut disk = rebooted.clone();
            check_after_reboot(&mut disk, &acked, &in_flight, &ctx);
            reboots += 1;
            // A second cut during that recovery must not lose anything either.
            let mut probe = rebooted.clone();
            let _ = Store::open_with(&mut probe, SIM_DIR);
            for cut2 in 0..probe.steps() {
                let mut again = rebooted.clone();
                again.set_budget(Some(cut2));
                let _ = Store::open_with(&mut again, SIM_DIR);
                let mut disk = again.after_power_loss(how);
                let ctx2 = format!("{ctx}; second cut at recovery step {cut2}");
                check_after_reboot(&mut disk, &acked, &in_flight, &ctx2);
                reboots += 1;
            }
        }
    }
    eprintln!("power cuts simulated: {total} crash points, {reboots} reboots checked");
    assert!(reboots > 1000, "{reboots}");
}

#[test]
fn torn_in_place_write_is_quarantined_never_loaded() {
    // What the temp-file protocol exists to avoid: a record rewritten in place and cut short.
    // Recovery must see every such state as the old value, the new value, or damage.
    let dir = Path::new(SIM_DIR);
    let old = Record::new(RecordKind::StaticPod, "p", b"{\"old\":true}".to_vec());
    let new = Record::new(
        RecordKind::StaticPod,
        "p",
        b"{\"new\":true,\"pad\":1234}".to_vec(),
    );
    let new_bytes = new.encode().unwrap();
    let mut quarantined = 0;
    for cut in 0..new_bytes.len() as u64 + 3 {
        let mut fs = SimFs::new();
        fs.plant(&dir.join("static.p.rec"), &old.encode().unwrap());
        fs.set_budget(Some(cut));
        let _ = fs.write_file_synced(&dir.join("static.p.rec"), &new_bytes);
        for how in PowerLoss::ALL {
            let mut disk = fs.after_power_loss(how);
            let mut s = Store::open_with(&mut disk, SIM_DIR).unwrap();
            quarantined += s.recovery().quarantined.len();
            let got = s.get(RecordKind::StaticPod, "p").unwrap();
            assert!(
                got.is_none() || got == Some(old.value.clone()) || got == Some(new.value.clone()),
                "cut {cut} {how:?}: {got:?}"
            );
        }
    }
    assert!(quarantined > 0);
}

/// A full medium: the refused put is an error naming the file, leaves no temp file and no
/// torn record, the old value stays readable, and once there is room again the kept write
/// goes through on its retry (with back-off between refused retries); a later put of the
/// same record replaces the kept intent, and a delete is kept the same way.
#[test]
fn full_disk_keeps_writes_and_catches_up() {
    let mut disk = SimFs::new();
    let mut s = Store::open_with(&mut disk, SIM_DIR).unwrap();
    s.put(RecordKind::StaticPod, "a", b"v1").unwrap();
    s.put(RecordKind::StaticPod, "gone", b"x").unwrap();
    s.fs_mut().set_full(true);
    let e = s.put(RecordKind::StaticPod, "a", b"v2").unwrap_err();
    assert!(e.is_out_of_space(), "{e}");
    assert!(e.to_string().contains("static.a.rec"), "{e}");
    s.put(RecordKind::ApiPod, "b", b"new").unwrap_err();
    s.put(RecordKind::ApiPod, "b", b"newer").unwrap_err();
    // A delete on a full disk works (it writes no data), so it is not kept.
    s.delete(RecordKind::StaticPod, "gone").unwrap();
    assert_eq!(s.deferred(), 2);
    assert_eq!(
        s.get(RecordKind::StaticPod, "a").unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(s.get(RecordKind::ApiPod, "b").unwrap(), None);

    let t0 = std::time::Instant::now();
    // Still full: nothing goes, and the next try waits longer.
    assert_eq!(s.retry_deferred(t0 + std::time::Duration::from_secs(2)), 0);
    assert_eq!(s.retry_deferred(t0 + std::time::Duration::from_secs(3)), 0);
    assert_eq!(s.deferred(), 2);
    s.fs_mut().set_full(false);
    assert_eq!(
        s.retry_deferred(t0 + std::time::Duration::from_secs(3)),
        0,
        "not due yet (back-off doubled to 2 s)"
    );
    assert_eq!(s.retry_deferred(t0 + std::time::Duration::from_secs(5)), 2);
    assert_eq!(s.deferred(), 0);
    assert_eq!(
        s.get(RecordKind::StaticPod, "a").unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(
        s.get(RecordKind::ApiPod, "b").unwrap().as_deref(),
        Some(&b"newer"[..])
    );
    drop(s);
    // Reopened: exactly these records, no temp files left.
    let names = disk.names(Path::new(SIM_DIR));
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let mut s = Store::open_with(&mut disk, SIM_DIR).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.recovery().quarantined.len(), 0);
    assert_eq!(
        s.get(RecordKind::ApiPod, "b").unwrap().as_deref(),
        Some(&b"newer"[..])
    );
}
