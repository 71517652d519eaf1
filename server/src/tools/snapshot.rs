//! `ferrokv snapshot status FILE [-w simple|json|table]` (and `restore`, in `tools::restore`): etcd's `etcdctl snapshot status` (etcdutl's in 3.5) on
//! an etcd snapshot file or bbolt database, ferrokv's or etcd's: the CRC-32C over every bucket name, key and value,
//! the revision of the last `key` entry, the number of entries and the database's size, printed as etcd prints
//! them. The file is read with the `bbolt` crate's reader, which refuses a damaged file with the page and the
//! reason.

use crate::error::Error;

/// What `snapshot status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Reads the status of the bbolt file at `path`.
pub fn status(path: &std::path::Path) -> Result<Status, Error> {
    let bad = |e: bbolt::Error| Error::Corrupt(format!("{}: {e}", path.display()));
    let r = bbolt::Reader::open(path).map_err(bad)?;
    let mut s = Status { hash: 0, revision: 0, total_key: 0, total_size: r.size() };
    for name in r.buckets().map_err(bad)? {
        s.hash = crc32c::crc32c_append(s.hash, &name);
        let is_key = name == b"key";
        let (mut hash, mut count, mut revision) = (s.hash, 0u64, s.revision);
        r.for_each(&name, &mut |k, v| {
            hash = crc32c::crc32c_append(crc32c::crc32c_append(hash, k), v);
            count += 1;
            if is_key && let Some(main) = k.get(..8) {
                revision = i64::from_be_bytes(main.try_into().unwrap_or([0; 8]));
            }
            Ok(())
        })
        .map_err(bad)?;
        (s.hash, s.total_key, s.revision) = (hash, s.total_key + count, revision);
    }
    Ok(s)
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
pub fn humanize(bytes: u64) -> String {
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(units.len() - 1);
    let val = (bytes as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 { format!("{val:.1} {}", units[e]) } else { format!("{val:.0} {}", units[e]) }
}

/// The command: returns the process's exit code.
pub fn main(args: Vec<String>) -> u8 {
    let mut format = "simple".to_string();
    let mut file = None;
    let mut it = args.into_iter();
    match it.next().as_deref() {
        Some("status") => {}
        Some("restore") => return crate::tools::restore::main(&it.collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: ferrokv snapshot status FILE [-w simple|json|table]\n       ferrokv snapshot restore FILE [flags]"
            );
            return 2;
        }
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "-w" | "--write-out" => format = it.next().unwrap_or_default(),
            w if w.starts_with("--write-out=") => format = w["--write-out=".len()..].to_string(),
            f => file = Some(f.to_string()),
        }
    }
    let Some(file) = file else {
        eprintln!("Error: snapshot status requires exactly one argument");
        return 1;
    };
    let s = match status(std::path::Path::new(&file)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    match format.as_str() {
        "json" => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            s.hash, s.revision, s.total_key, s.total_size
        ),
        "table" => {
            let cells =
                [format!("{:x}", s.hash), s.revision.to_string(), s.total_key.to_string(), humanize(s.total_size)];
            let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let widths: Vec<usize> = heads.iter().zip(&cells).map(|(h, c)| h.len().max(c.len())).collect();
            let rule = format!("+{}+", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
            let head: Vec<String> = heads.iter().zip(&widths).map(|(c, w)| format!(" {c:^w$} ")).collect();
            let row: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!(" {c:>w$} ")).collect();
            println!("{rule}\n|{}|\n{rule}\n|{}|\n{rule}", head.join("|"), row.join("|"));
        }
        _ => println!("{:x}, {}, {}, {}", s.hash, s.revision, s.total_key, humanize(s.total_size)),
    }
    0
}

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn sizes_as_go_humanize_prints_them() {
        assert_eq!(humanize(7), "7 B");
        assert_eq!(humanize(57_344), "57 kB");
        assert_eq!(humanize(1_056_768), "1.1 MB");
        assert_eq!(humanize(20_480), "20 kB");
    }
}
