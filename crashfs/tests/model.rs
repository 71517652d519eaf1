//! The durability model, through a real mount: what a power loss keeps and loses, by the rules in the journal's
//! module header.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use crashfs::{CrashFs, Journal, Loss};

fn sync_dir(p: &std::path::Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

/// The image at the end of the journal under `loss`, as (path, bytes) pairs.
fn at_end(j: &Journal, loss: Loss) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    j.replay(&[j.ops.len()], |c| {
        let img = c.image(loss);
        out = img.files.iter().map(|(p, c)| (p.display().to_string(), c.read(0, c.len() as usize))).collect();
    });
    out
}

#[test]
fn only_synced_data_under_synced_names_survives_a_power_loss() {
    let mnt = tempfile::tempdir().unwrap();
    let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
    let root = fs.path().to_path_buf();
    std::fs::create_dir(root.join("d")).unwrap();
    let mut f = File::create(root.join("d/a")).unwrap();
    f.write_all(b"hello").unwrap();
    f.sync_data().unwrap();
    let j = fs.journal();
    assert_eq!(at_end(&j, Loss::Everything), vec![], "neither the directory nor the file's name was synced");
    assert_eq!(at_end(&j, Loss::Nothing), vec![("d/a".into(), b"hello".to_vec())]);

    sync_dir(&root);
    sync_dir(&root.join("d"));
    f.write_all(b" world").unwrap();
    let j = fs.journal();
    assert_eq!(at_end(&j, Loss::Everything), vec![("d/a".into(), b"hello".to_vec())], "the unsynced append is lost");
    assert_eq!(at_end(&j, Loss::Nothing), vec![("d/a".into(), b"hello world".to_vec())]);

    // A rename not followed by a directory fsync may be lost; after it, it is not.
    let mut t = File::create(root.join("d/b.tmp")).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_all().unwrap();
    sync_dir(&root.join("d"));
    std::fs::rename(root.join("d/b.tmp"), root.join("d/a")).unwrap();
    let names = |j: &Journal, loss| at_end(j, loss).into_iter().map(|(p, _)| p).collect::<Vec<_>>();
    assert_eq!(names(&fs.journal(), Loss::Everything), vec!["d/a", "d/b.tmp"]);
    sync_dir(&root.join("d"));
    assert_eq!(at_end(&fs.journal(), Loss::Everything), vec![("d/a".into(), b"new".to_vec())]);
    drop((f, t));
    fs.unmount().unwrap();
}

#[test]
fn unsynced_writes_tear_at_sectors_and_lengths_and_truncates_follow_the_file() {
    let mnt = tempfile::tempdir().unwrap();
    let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
    let p = fs.path().join("f");
    let f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&p).unwrap();
    f.set_len(8192).unwrap();
    f.sync_all().unwrap();
    sync_dir(fs.path());
    f.write_all_at(&[0xffu8; 8192], 0).unwrap();
    let j = fs.journal();
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..40 {
        for loss in [Loss::Sectors(seed), Loss::Prefix(seed)] {
            let got = &at_end(&j, loss)[0].1;
            assert_eq!(got.len(), 8192);
            // Every sector is all old or all new: a write tears only at a sector boundary.
            for s in got.chunks(512) {
                assert!(s.iter().all(|&b| b == s[0]), "a sector is torn inside");
            }
            kinds.insert(got.chunks(512).filter(|s| s[0] == 0xff).count());
        }
    }
    assert!(kinds.contains(&0) && kinds.contains(&16), "seeds give every outcome from none to all: {kinds:?}");
    assert!(kinds.len() > 4, "and torn ones between: {kinds:?}");

    // A synced truncate is durable; an unsynced one may be lost.
    f.sync_data().unwrap();
    f.set_len(100).unwrap();
    assert_eq!(at_end(&fs.journal(), Loss::Everything)[0].1.len(), 8192);
    f.sync_data().unwrap();
    assert_eq!(at_end(&fs.journal(), Loss::Everything)[0].1, vec![0xffu8; 100]);
    drop(f);
    fs.unmount().unwrap();
}

#[test]
fn images_write_out_as_sparse_files_and_crash_points_cover_every_sync() {
    let mnt = tempfile::tempdir().unwrap();
    let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
    let p = fs.path().join("big");
    let f = File::create(&p).unwrap();
    f.set_len(64 << 20).unwrap();
    f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
    f.sync_all().unwrap();
    sync_dir(fs.path());
    fs.mark(7);
    drop(f);
    let j = fs.unmount().unwrap();
    let syncs = j.ops.iter().filter(|o| matches!(o, crashfs::Op::Sync { .. } | crashfs::Op::SyncDir { .. })).count();
    let points = j.crash_points(10_000);
    assert!(points.len() >= 2 * syncs, "before and after every sync: {points:?}");
    let out = tempfile::tempdir().unwrap();
    let mut seen_marks = Vec::new();
    j.replay(&[j.ops.len()], |c| {
        seen_marks = c.marks.to_vec();
        c.image(Loss::Everything).write_to(out.path()).unwrap();
    });
    assert_eq!(seen_marks, vec![7]);
    let written = out.path().join("big");
    let meta = std::fs::metadata(&written).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "holes stay holes: {} blocks", meta.blocks());
    let mut tail = [0u8; 4];
    File::open(&written).unwrap().read_exact_at(&mut tail, (64 << 20) - 4).unwrap();
    assert_eq!(&tail, b"tail");
}
