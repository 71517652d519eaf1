//! gofail's terms: `<terms> :: <term> ("->" <term>)*`, `<term> :: <mod>* <act> ["(" <val> ")"]`,
//! `<mod> :: <float> "%" | <int> "*"`, `<act> :: off | return | sleep | panic | print`,
//! `<val> :: <int> | "<string>" | true | false | <nothing>`. The first term whose modifiers allow it runs: `N*`
//! lets a term run N times, `P%` with probability P/100. A `sleep` takes milliseconds or a Go duration string.
//! (gofail's `break`, which attaches gdb, is not offered.) An integer percentage (`50%`) is taken as gofail takes
//! `50.0%`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::{Error, Fired};

/// A term's value: what `return(…)` hands over, or what `sleep(…)` sleeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Unit,
    Int(i64),
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Off,
    Return,
    Sleep,
    Panic,
    Print,
}

#[derive(Debug)]
enum Mod {
    /// Runs this many more times.
    Count(u64),
    /// Runs with this probability.
    Chance(f64),
}

#[derive(Debug)]
struct Term {
    mods: Vec<Mod>,
    act: Act,
    val: Value,
}

/// A failpoint's parsed terms, with how many times one of them ran.
#[derive(Debug)]
pub struct Terms {
    desc: String,
    chain: Vec<Term>,
    count: u64,
}

impl Terms {
    /// Parses gofail's terms.
    pub fn parse(desc: &str) -> Result<Terms, Error> {
        let mut chain = Vec::new();
        let mut rest = desc;
        loop {
            let (term, after) = parse_term(rest).ok_or(Error::BadParse)?;
            chain.push(term);
            if after.is_empty() {
                break;
            }
            rest = after.strip_prefix("->").ok_or(Error::BadParse)?;
        }
        Ok(Terms { desc: desc.to_string(), chain, count: 0 })
    }

    pub fn desc(&self) -> &str {
        &self.desc
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Runs the first term its modifiers allow: prints or ends the process itself, hands a return or a sleep back.
    pub(crate) fn next(&mut self, name: &str) -> Option<Fired> {
        let term = self.chain.iter_mut().find_map(|t| t.mods.iter_mut().all(allow).then_some(t))?;
        self.count += 1;
        match term.act {
            Act::Off => None,
            Act::Return => Some(Fired::Return(term.val.clone())),
            Act::Sleep => match &term.val {
                Value::Int(ms) => Some(Fired::Sleep(Duration::from_millis((*ms).max(0) as u64))),
                Value::Str(s) => go_duration(s).map(Fired::Sleep),
                _ => None,
            },
            Act::Print => {
                println!("failpoint print: {name}");
                None
            }
            Act::Panic => {
                // As a Go panic ends etcd: the message on stderr, exit status 2, nothing unwound or flushed to disk.
                match &term.val {
                    Value::Unit => eprintln!("panic: failpoint panic: {name}"),
                    v => eprintln!("panic: failpoint panic: {}", show(v)),
                }
                std::process::exit(2)
            }
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Unit => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
    }
}

/// Whether a modifier lets its term run now (a count is spent only when reached, as in gofail).
fn allow(m: &mut Mod) -> bool {
    match m {
        Mod::Count(0) => false,
        Mod::Count(n) => {
            *n -= 1;
            true
        }
        Mod::Chance(p) => random_unit() <= *p,
    }
}

/// A uniform draw in [0, 1) (std's randomly keyed hasher over a counter; no cryptographic need here).
fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// One term and what follows it.
fn parse_term(s: &str) -> Option<(Term, &str)> {
    let mut mods = Vec::new();
    let mut rest = s;
    loop {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        if digits == 0 {
            break;
        }
        let (num, after) = rest.split_at(digits);
        if let Some(after) = after.strip_prefix('%') {
            mods.push(Mod::Chance(num.parse::<f64>().ok()? / 100.0));
            rest = after;
        } else if let Some(after) = after.strip_prefix('*') {
            mods.push(Mod::Count(num.parse().ok()?));
            rest = after;
        } else {
            return None;
        }
    }
    let acts = [
        ("off", Act::Off),
        ("return", Act::Return),
        ("sleep", Act::Sleep),
        ("panic", Act::Panic),
        ("print", Act::Print),
    ];
    let (word, act) = acts.into_iter().find(|(w, _)| rest.starts_with(w))?;
    rest = &rest[word.len()..];
    let mut val = Value::Unit;
    if let Some(inner) = rest.strip_prefix('(') {
        let (v, after) = parse_val(inner)?;
        val = v;
        rest = after.strip_prefix(')')?;
    }
    if act == Act::Sleep && !matches!(val, Value::Int(_) | Value::Str(_)) {
        return None;
    }
    Some((Term { mods, act, val }, rest))
}

/// A value up to (not including) its closing parenthesis.
fn parse_val(s: &str) -> Option<(Value, &str)> {
    if s.starts_with(')') {
        return Some((Value::Unit, s));
    }
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((Value::Str(out), &body[i + 1..])),
                '\\' => match chars.next()?.1 {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        return None;
    }
    for (word, b) in [("true", true), ("false", false)] {
        if let Some(after) = s.strip_prefix(word) {
            return Some((Value::Bool(b), after));
        }
    }
    let len = s.char_indices().take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+'))).count();
    let n = s[..len].parse().ok()?;
    Some((Value::Int(n), &s[len..]))
}

/// Go's `time.ParseDuration` for the forms a failpoint takes: a sequence of decimal numbers with units
/// (`300ms`, `1.5s`, `1m30s`, `2h`; `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`).
fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
        let (unit, scale) = units.into_iter().filter(|(u, _)| rest.starts_with(u)).max_by_key(|(u, _)| u.len())?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(t: &mut Terms) -> Option<Fired> {
        t.next("test")
    }

    #[test]
    fn gofail_grammar() {
        for good in [
            "off",
            "return",
            "return()",
            "return(1)",
            "return(-3)",
            "return(\"a)b\")",
            "return(true)",
            "sleep(100)",
            "sleep(\"1m30s\")",
            "panic",
            "print",
            "2*return",
            "50.0%return",
            "50%3*sleep(1)",
            "1*sleep(10)->panic",
            "3*off->return(2)",
        ] {
            assert!(Terms::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "explode",
            "return(",
            "sleep",
            "sleep()",
            "2return",
            "return->",
            "off->",
            "return)",
            "return(1)x",
            "break",
            "5*",
        ] {
            assert!(Terms::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_chain_runs_its_counts_in_order() {
        let mut t = Terms::parse("2*return(1)->1*sleep(5)->return(\"z\")").unwrap();
        assert_eq!(fire(&mut t), Some(Fired::Return(Value::Int(1))));
        assert_eq!(fire(&mut t), Some(Fired::Return(Value::Int(1))));
        assert_eq!(fire(&mut t), Some(Fired::Sleep(Duration::from_millis(5))));
        assert_eq!(fire(&mut t), Some(Fired::Return(Value::Str("z".into()))));
        assert_eq!(t.count(), 4);
        let mut once = Terms::parse("1*return").unwrap();
        assert_eq!(fire(&mut once), Some(Fired::Return(Value::Unit)));
        assert_eq!(fire(&mut once), None, "spent");
        assert_eq!(once.count(), 1);
    }

    #[test]
    fn chances_fire_about_as_often_as_asked() {
        let mut t = Terms::parse("25.0%return").unwrap();
        let fired = (0..4000).filter(|_| fire(&mut t).is_some()).count();
        assert!((800..1200).contains(&fired), "25% of 4000 fired {fired} times");
        let mut never = Terms::parse("0%return").unwrap();
        assert!((0..1000).all(|_| fire(&mut never).is_none()));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration("5x"), None);
    }
}
