//! The writer's files read back through the reader exactly, for any buckets and entries (empty buckets, values
//! larger than a page, enough entries for several branch levels); and damaged files (truncated, bytes flipped,
//! a page pointing back at its parent) give errors, never a panic or a hang.

use std::collections::BTreeMap;

use proptest::prelude::*;

type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

struct Mem<'a>(&'a Buckets);

impl bbolt::Source for Mem<'_> {
    fn visit(&mut self, bucket: usize, f: &mut bbolt::Visit<'_>) -> bbolt::Result<()> {
        let entries = self.0.values().nth(bucket).expect("a bucket the writer was given");
        for (k, v) in entries {
            f(k, v)?;
        }
        Ok(())
    }
}

fn write_file(buckets: &Buckets, page_size: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let names: Vec<&[u8]> = buckets.keys().map(Vec::as_slice).collect();
    let opts = bbolt::WriteOptions { page_size, txid: 7 };
    let n = bbolt::write(file.as_file_mut(), &names, &mut Mem(buckets), opts).unwrap();
    assert_eq!(n % page_size as u64, 0);
    file
}

fn read_all(path: &std::path::Path) -> bbolt::Result<Buckets> {
    let r = bbolt::Reader::open(path)?;
    let mut out = Buckets::new();
    for name in r.buckets()? {
        let mut entries = BTreeMap::new();
        r.for_each(&name, &mut |k, v| {
            entries.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        out.insert(name, entries);
    }
    Ok(out)
}

fn buckets() -> impl Strategy<Value = Buckets> {
    let value = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => proptest::collection::vec(any::<u8>(), 4000..12000),
    ];
    let entries = proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..24), value, 0..400);
    proptest::collection::btree_map(proptest::collection::vec(b'a'..=b'z', 1..8), entries, 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn written_files_read_back_exactly(b in buckets(), small in any::<bool>()) {
        let file = write_file(&b, if small { 1024 } else { 4096 });
        prop_assert_eq!(read_all(file.path()).unwrap(), b);
    }

    #[test]
    fn damage_is_an_error_never_a_panic(b in buckets(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        let file = write_file(&b, 1024);
        let mut bytes = std::fs::read(file.path()).unwrap();
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] ^= byte | 1;
        }
        std::fs::write(file.path(), &bytes).unwrap();
        // Either it still reads (the damage hit padding, or a value) or it says why.
        let _ = read_all(file.path());
    }
}

#[test]
fn many_entries_make_several_branch_levels() {
    let mut entries = BTreeMap::new();
    for i in 0u32..60_000 {
        entries.insert(format!("key-{i:08}").into_bytes(), vec![i as u8; 50]);
    }
    let b: Buckets = [(b"key".to_vec(), entries), (b"empty".to_vec(), BTreeMap::new())].into_iter().collect();
    let file = write_file(&b, 1024);
    assert_eq!(read_all(file.path()).unwrap(), b);
}

#[test]
fn a_page_that_points_at_its_parent_is_refused() {
    let mut entries = BTreeMap::new();
    for i in 0u32..200 {
        entries.insert(format!("k{i:05}").into_bytes(), vec![0u8; 40]);
    }
    let b: Buckets = [(b"key".to_vec(), entries)].into_iter().collect();
    let file = write_file(&b, 1024);
    let mut bytes = std::fs::read(file.path()).unwrap();
    // The bucket's root is the last page, a branch; point its first child at itself.
    let last = bytes.len() / 1024 - 1;
    let page = &mut bytes[last * 1024..];
    assert_eq!(u16::from_le_bytes([page[8], page[9]]), 0x01, "the last page is the root branch");
    page[16 + 8..16 + 16].copy_from_slice(&(last as u64).to_le_bytes());
    std::fs::write(file.path(), &bytes).unwrap();
    let err = read_all(file.path()).unwrap_err().to_string();
    assert!(err.contains("reached twice"), "{err}");
}
