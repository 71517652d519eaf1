//! Failpoints as etcd's gofail has them: named places in the code where a test or an operator makes the process
//! sleep, end, print, or take a failure path, set at run time by name with gofail's terms (`sleep(100)`, `panic`,
//! `return`, `2*sleep(10)->off`, `50.0%panic`). They are compiled into every build and are off until set.
//!
//! The crates that have failpoints declare them as statics (`wal::failpoints`, `mvcc::failpoints`, the server's own)
//! and the binary [`register`]s them all at start; the server then takes `GOFAIL_FAILPOINTS` and serves gofail's
//! HTTP interface on `GOFAIL_HTTP`. This crate is the registry, the terms and their evaluation; it knows nothing
//! of HTTP or of what a failpoint guards.
//!
//! Why our own and not the `fail` crate: gofail's interface is what etcd's users and tests drive, and `fail`
//! differs from it where it matters: its `panic` unwinds one thread (gofail's ends the process, which a crash test
//! needs), it lists only the failpoints that are set (gofail lists every one, with its execution count), its `sleep`
//! takes only milliseconds (gofail also takes Go durations, `sleep("1s")`), and its disabled check takes a lock and a
//! map lookup (invariant 1).
//!
//! **Invariants**
//! 1. A failpoint without terms costs its caller one relaxed atomic load: [`Failpoint::eval`] is inlined and
//!    tests only `armed`; everything else is in a cold function.
//! 2. `armed` is set after the terms are stored and cleared before they are removed, both under the terms' lock;
//!    a caller that sees `armed` and then finds no terms does nothing.
//! 3. One failpoint's terms are evaluated by one caller at a time, the action included (gofail holds its terms'
//!    lock through the action): `2*sleep(100)` fires twice in all, and its callers queue behind the sleep.
//!
//! **Threading**: any thread may evaluate, set or clear. The registry's lock is taken only to set, clear, list and
//! register, never by an evaluation.

mod terms;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use terms::{Terms, Value};

/// What setting, clearing or reading a failpoint can fail with (gofail's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("failpoint: failpoint does not exist")]
    NoExist,
    #[error("failpoint: failpoint is disabled")]
    Disabled,
    #[error("failpoint: could not parse terms")]
    BadParse,
    /// A `GOFAIL_FAILPOINTS` entry that is not `name=terms`.
    #[error("bad failpoint {0:?}")]
    BadEntry(String),
}

/// What a failpoint that fired asks of its caller, for callers that act on it themselves.
#[derive(Debug, Clone, PartialEq)]
pub enum Fired {
    /// `return` or `return(v)`: take the failure path the failpoint stands for.
    Return(Value),
    /// `sleep(…)`: wait this long (a caller on an async runtime sleeps without blocking its thread).
    Sleep(Duration),
}

/// One named failpoint.
#[derive(Debug)]
pub struct Failpoint {
    name: &'static str,
    armed: AtomicBool,
    terms: Mutex<Option<Terms>>,
}

impl Failpoint {
    /// A failpoint named as etcd names the place (`walBeforeFdatasync`), off.
    pub const fn new(name: &'static str) -> Self {
        Failpoint { name, armed: AtomicBool::new(false), terms: Mutex::new(None) }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the failpoint: nothing unless terms are set (invariant 1). A `sleep` sleeps here, a `panic` ends the
    /// process here; a `return` is handed to the caller, which takes the failure path it stands for (or, where the
    /// place has none, as at most of etcd's, ignores it).
    #[inline(always)]
    pub fn eval(&self) -> Option<Value> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        match self.fire(true)? {
            Fired::Return(v) => Some(v),
            Fired::Sleep(_) => None,
        }
    }

    /// As [`Failpoint::eval`], but a `sleep` is handed to the caller instead of blocking this thread (for async
    /// code; invariant 3 then holds up to the sleep, not through it).
    #[inline(always)]
    pub fn eval_deferred(&self) -> Option<Fired> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        self.fire(false)
    }

    #[cold]
    #[inline(never)]
    fn fire(&self, sleep_here: bool) -> Option<Fired> {
        let mut guard = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        let terms = guard.as_mut()?;
        let fired = terms.next(self.name)?;
        match fired {
            Fired::Sleep(d) if sleep_here => {
                std::thread::sleep(d);
                None
            }
            other => Some(other),
        }
    }

    /// Sets the failpoint's terms (gofail's `Enable`).
    pub fn set(&self, desc: &str) -> Result<(), Error> {
        let terms = Terms::parse(desc)?;
        let mut guard = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        *guard = Some(terms);
        self.armed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Clears the failpoint (gofail's `Disable`); `Disabled` if it was not set.
    pub fn clear(&self) -> Result<(), Error> {
        let mut guard = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        self.armed.store(false, Ordering::Relaxed);
        guard.take().map(|_| ()).ok_or(Error::Disabled)
    }

    /// The terms as they were given and how many times a term of them ran; `Disabled` if none are set.
    pub fn status(&self) -> Result<(String, u64), Error> {
        let guard = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|t| (t.desc().to_string(), t.count())).ok_or(Error::Disabled)
    }
}

static REGISTRY: Mutex<Vec<&'static Failpoint>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<&'static Failpoint>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds failpoints to the process's registry (a name registered twice is kept once).
pub fn register(points: &[&'static Failpoint]) {
    let mut r = registry();
    for p in points {
        if !r.iter().any(|q| q.name == p.name) {
            r.push(p);
        }
    }
}

fn find(name: &str) -> Result<&'static Failpoint, Error> {
    registry().iter().copied().find(|p| p.name == name).ok_or(Error::NoExist)
}

/// Sets the named failpoint's terms.
pub fn enable(name: &str, desc: &str) -> Result<(), Error> {
    find(name)?.set(desc)
}

/// Clears the named failpoint.
pub fn disable(name: &str) -> Result<(), Error> {
    find(name)?.clear()
}

/// The named failpoint's terms and execution count.
pub fn status(name: &str) -> Result<(String, u64), Error> {
    find(name)?.status()
}

/// Every registered failpoint's name and terms (empty when off), sorted by name.
pub fn list() -> Vec<(&'static str, String)> {
    let points: Vec<&'static Failpoint> = registry().clone();
    let mut out: Vec<_> = points.iter().map(|p| (p.name, p.status().map(|s| s.0).unwrap_or_default())).collect();
    out.sort();
    out
}

/// Parses gofail's list of failpoints, `name=terms[;name=terms]*` (`GOFAIL_FAILPOINTS`, and the body of a PUT
/// to `/failpoints`). The terms are parsed when they are set.
pub fn parse_list(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for entry in text.split(';').filter(|e| !e.is_empty()) {
        match entry.split('=').collect::<Vec<_>>().as_slice() {
            [name, terms] => out.push((name.to_string(), terms.to_string())),
            _ => return Err(Error::BadEntry(entry.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: Failpoint = Failpoint::new("testA");
    static B: Failpoint = Failpoint::new("testB");

    #[test]
    fn off_until_set_and_counted_once_set() {
        register(&[&A, &B]);
        assert_eq!(A.eval(), None);
        assert_eq!(status("testA"), Err(Error::Disabled));
        enable("testA", "2*return(7)->return(\"x\")").unwrap();
        assert_eq!(A.eval(), Some(Value::Int(7)));
        assert_eq!(A.eval(), Some(Value::Int(7)));
        assert_eq!(A.eval(), Some(Value::Str("x".into())));
        assert_eq!(status("testA"), Ok(("2*return(7)->return(\"x\")".to_string(), 3)));
        let listed = list();
        assert!(listed.contains(&("testA", "2*return(7)->return(\"x\")".to_string())), "{listed:?}");
        assert!(listed.contains(&("testB", String::new())), "{listed:?}");
        disable("testA").unwrap();
        assert_eq!(A.eval(), None);
        assert_eq!(disable("testA"), Err(Error::Disabled));
        assert_eq!(enable("nope", "off"), Err(Error::NoExist));
        assert_eq!(enable("testB", "explode"), Err(Error::BadParse));
        assert_eq!(B.eval(), None, "a failed set leaves the failpoint off");
    }

    #[test]
    fn a_sleep_sleeps_here_or_is_handed_over() {
        static S: Failpoint = Failpoint::new("testSleep");
        S.set("sleep(30)").unwrap();
        let t = std::time::Instant::now();
        assert_eq!(S.eval(), None);
        assert!(t.elapsed() >= Duration::from_millis(30));
        S.set("sleep(\"1.5s\")").unwrap();
        assert_eq!(S.eval_deferred(), Some(Fired::Sleep(Duration::from_millis(1500))));
    }

    #[test]
    fn gofail_lists() {
        assert_eq!(
            parse_list("a=sleep(1);b=panic;").unwrap(),
            vec![("a".to_string(), "sleep(1)".to_string()), ("b".to_string(), "panic".to_string())]
        );
        assert_eq!(parse_list("a"), Err(Error::BadEntry("a".into())));
        assert_eq!(parse_list("a=b=c"), Err(Error::BadEntry("a=b=c".into())));
    }
}
