//! The peer transport's decoder on an arbitrary connection: the preamble check, then frames (length, kind, body)
//! decoded as a member decodes them (Raft messages through protobuf, lease renewals, the other kinds) until the
//! stream ends or a frame is refused; never a panic, and no frame over the limit is allocated.

#![no_main]

use libfuzzer_sys::fuzz_target;
use server::consensus::transport::{check_hello, parse_frame, read_frame};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if check_hello(&mut r).is_err() {
        return;
    }
    let mut buf = Vec::new();
    while read_frame(&mut r, &mut buf) {
        if parse_frame(&buf).is_none() {
            return;
        }
    }
});
