//! diskbench's `wal` workload is fio's etcd recipe: the same number of writes and of flushes for the same --size and
//! --bs, in the same preallocated layout. (Speed agreement is a measurement, made by `examples/compare_fio.rs` and
//! recorded in docs/performance.md; this test only pins the definition.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::run;
use serde_json::Value;

#[test]
fn same_recipe_same_number_of_writes_and_flushes() {
    if Command::new("fio").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI installs fio (scripts/test.sh); it must be on PATH");
        eprintln!("skipping: fio is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fio_dir = dir.path().join("fio");
    std::fs::create_dir(&fio_dir).unwrap();
    let out = Command::new("fio")
        .args(["--rw=write", "--ioengine=sync", "--fdatasync=1", "--size=4m", "--bs=2300", "--name=etcd"])
        .arg(format!("--directory={}", fio_dir.display()))
        .arg("--output-format=json")
        .output()
        .unwrap();
    let fio: Value = serde_json::from_slice(&out.stdout).expect("fio JSON");
    let fio_writes = fio["jobs"][0]["write"]["total_ios"].as_u64().unwrap();
    let fio_syncs = fio["jobs"][0]["sync"]["lat_ns"]["N"].as_u64().unwrap();
    let fio_file = std::fs::metadata(fio_dir.join("etcd.0.0")).unwrap().len();

    let target = dir.path().join("diskbench");
    std::fs::create_dir(&target).unwrap();
    let out = run(
        &["-w", "wal", "-e", "sync", "--file-mode", "preallocated", "--size", "4m", "--json", target.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let ours: Value = serde_json::from_slice(&out.stdout).expect("diskbench JSON");
    let wal = &ours["results"]["wal"][0];
    assert_eq!(wal["ops"].as_u64().unwrap(), fio_writes, "writes");
    assert_eq!(wal["sync"]["count"].as_u64().unwrap(), fio_syncs, "flushes");
    assert_eq!(fio_file, 4 << 20, "fio preallocated the whole file, as diskbench's preallocated mode does");
}
