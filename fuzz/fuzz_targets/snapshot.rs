//! The snapshot reader on an arbitrary stream: restoring a store from it (what a lagging member does with the
//! leader's image, and `snapshot restore` with a backup) must end in a store that passes its own checks or in an
//! error, never a panic, and a refused stream leaves nothing behind.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = ferrokv_fuzz::scratch_dir("snap");
    let path = dir.join("db");
    let mut input = data;
    match mvcc::Db::restore_from(&path, &mut input, &mvcc::store::KEYSPACES, mvcc::DbConfig::default()) {
        Ok(db) => {
            let _ = db.check();
        }
        Err(_) => assert!(!path.exists(), "a refused snapshot left a store behind"),
    }
    let _ = std::fs::remove_dir_all(&dir);
});
