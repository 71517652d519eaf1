//! What a failpoint costs its caller: off (the state every production member runs in) it should cost what one
//! relaxed atomic load costs; set to `off` (armed, firing nothing) it takes its lock.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use failpoint::Failpoint;

static UNSET: Failpoint = Failpoint::new("benchUnset");
static ARMED_OFF: Failpoint = Failpoint::new("benchArmedOff");
static FLAG: AtomicBool = AtomicBool::new(false);

fn failpoints(c: &mut Criterion) {
    let mut g = c.benchmark_group("failpoint");
    g.bench_function("relaxed_atomic_load", |b| b.iter(|| black_box(&FLAG).load(Ordering::Relaxed)));
    g.bench_function("unset_eval", |b| b.iter(|| black_box(&UNSET).eval()));
    ARMED_OFF.set("off").unwrap();
    g.bench_function("set_off_eval", |b| b.iter(|| black_box(&ARMED_OFF).eval()));
    g.finish();
}

criterion_group!(benches, failpoints);
criterion_main!(benches);
