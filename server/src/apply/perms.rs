//! Who may do what: the auth state the checks read (built from the store's auth keyspaces, `apply::auth`), etcd
//! 3.4's permission rules, and the simple tokens.
//!
//! **Rules** (etcd's `isOpPermitted`, `IsAdminPermitted`, range permission cache):
//! - With authentication disabled everything is permitted and tokens are ignored.
//! - A request carries its caller: a user name and the auth revision its token was checked at. No user is
//!   "user name is empty"; a revision below the current one is "revision of auth store is old" (the client
//!   authenticates again); an unknown user is "permission denied"; a user with the role `root` may do anything.
//! - A permission with an empty range end is one key; with range end `\0`, every key from its key on; otherwise
//!   `[key, range_end)`. A request for one key needs a permission holding that key; a request for a range needs the
//!   union of the user's permissions of that type to cover the whole range (a READWRITE permission counts for
//!   both). Admin requests need the role `root`.
//!
//! **JWT tokens** (`--auth-token jwt,...`): see `jwt`; they carry their user and auth revision.
//!
//! **Simple tokens** (`--auth-token simple`): issued by an Authenticate entry applied on every member, so a token
//! works on every member; `<16 random letters>.<the entry's index>`. A token lasts `--auth-token-ttl` after its
//! last use; deleting a user or changing its password ends its tokens; disabling authentication ends all.
//!
//! **Threading**: the state is replaced whole (an `Arc` swap under a lock held only for the swap) by the apply
//! thread after each auth change, at start and when a snapshot is installed; the services read the current one.
//! Tokens are behind their own mutex.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mvcc::Store;
use prost::Message as _;

use crate::apply::auth::{AUTH, ENABLED, REVISION, ROLES, ROOT, USERS};
use crate::error::Error;
use crate::proto::{authpb, etcdserverpb as pb};
use crate::request::Caller;

/// Key ranges `[start, end)`, `None` for no end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(Vec<u8>, Option<Vec<u8>>)>);

/// The range a permission or request names: one key (empty end), from a key on (`\0`), or `[key, end)`.
fn span(key: &[u8], range_end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    match range_end {
        [] => (key.to_vec(), Some([key, &[0]].concat())),
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

impl Ranges {
    fn add(&mut self, key: &[u8], range_end: &[u8]) {
        self.0.push(span(key, range_end));
        self.0.sort();
    }

    /// Whether `key` is in one of the ranges.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.0.iter().any(|(s, e)| s.as_slice() <= key && e.as_deref().is_none_or(|e| key < e))
    }

    /// Whether the ranges together cover all of `[start, end)` (`None`: to the end of the keyspace).
    pub fn covers(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        if end.is_some_and(|e| e <= start) {
            return true;
        }
        let mut reached = start.to_vec();
        for (s, e) in &self.0 {
            if s.as_slice() > reached.as_slice() {
                break;
            }
            match e {
                None => return true,
                Some(e) if e.as_slice() > reached.as_slice() => reached = e.clone(),
                Some(_) => {}
            }
            if end.is_some_and(|end| reached.as_slice() >= end) {
                return true;
            }
        }
        false
    }
}

/// One user's merged permissions.
#[derive(Debug, Clone, Default)]
struct UserPerms {
    root: bool,
    roles: Vec<String>,
    read: Ranges,
    write: Ranges,
    /// The bcrypt hash; `None` for a user added with `no_password`.
    hash: Option<String>,
}

/// The auth state the checks read (see the module header).
#[derive(Debug, Clone, Default)]
pub struct AuthState {
    enabled: bool,
    revision: u64,
    users: HashMap<String, UserPerms>,
}

/// A keyspace's records, borrowed from a read.
type Records<'a> = Vec<(&'a [u8], &'a [u8])>;

fn records(r: &mvcc::ReadTxn, ks: mvcc::KeyspaceId) -> Result<Records<'_>, mvcc::Error> {
    r.range(ks, Bound::Unbounded, Bound::Unbounded)?.collect()
}

impl AuthState {
    /// Reads the state from the store.
    pub fn load(store: &Store) -> Result<AuthState, mvcc::Error> {
        let db = store.db();
        let r = db.read();
        let (auth, users, roles) = (db.keyspace(AUTH)?, db.keyspace(USERS)?, db.keyspace(ROLES)?);
        let enabled = crate::apply::auth::enabled_in(r.get(auth, ENABLED)?);
        let revision = crate::apply::auth::revision_in(r.get(auth, REVISION)?);
        let bad = |what: &'static str| mvcc::Error::Keyspace(what.into(), "a record that does not decode");
        let mut perms: HashMap<String, Vec<authpb::Permission>> = HashMap::new();
        for (k, v) in records(&r, roles)? {
            let role = authpb::Role::decode(v).map_err(|_| bad(ROLES))?;
            perms.insert(String::from_utf8_lossy(k).into_owned(), role.key_permission);
        }
        let mut state = AuthState { enabled, revision, users: HashMap::new() };
        for (k, v) in records(&r, users)? {
            let u = authpb::User::decode(v).map_err(|_| bad(USERS))?;
            let no_password = u.options.is_some_and(|o| o.no_password);
            let mut p = UserPerms {
                root: u.roles.iter().any(|r| r == ROOT),
                roles: u.roles.clone(),
                hash: (!no_password).then(|| String::from_utf8_lossy(&u.password).into_owned()),
                ..UserPerms::default()
            };
            for perm in u.roles.iter().filter_map(|r| perms.get(r)).flatten() {
                let (read, write) = match authpb::permission::Type::try_from(perm.perm_type) {
                    Ok(authpb::permission::Type::Read) => (true, false),
                    Ok(authpb::permission::Type::Write) => (false, true),
                    Ok(authpb::permission::Type::Readwrite) => (true, true),
                    Err(_) => (false, false),
                };
                if read {
                    p.read.add(&perm.key, &perm.range_end);
                }
                if write {
                    p.write.add(&perm.key, &perm.range_end);
                }
            }
            state.users.insert(String::from_utf8_lossy(k).into_owned(), p);
        }
        Ok(state)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// etcd's checks before a key permission: `Ok(None)` when everything is allowed (authentication off, the
    /// member itself, a root user), else the caller's permissions; a caller with no user, a token older than the
    /// auth state, and an unknown user are refused.
    fn perms_of(&self, c: &Caller) -> Result<Option<&UserPerms>, Error> {
        if !self.enabled || c.internal {
            return Ok(None);
        }
        if c.revision == 0 {
            return Err(Error::UserEmpty);
        }
        if c.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        match self.users.get(&c.user) {
            None => Err(Error::PermissionDenied),
            Some(u) if u.root => Ok(None),
            Some(u) => Ok(Some(u)),
        }
    }

    /// etcd's isOpPermitted.
    fn op_permitted(&self, c: &Caller, key: &[u8], range_end: &[u8], write: bool) -> Result<(), Error> {
        let Some(u) = self.perms_of(c)? else { return Ok(()) };
        let ranges = if write { &u.write } else { &u.read };
        let permitted = match range_end {
            [] => ranges.holds(key),
            _ => {
                let (start, end) = span(key, range_end);
                ranges.covers(&start, end.as_deref())
            }
        };
        if permitted { Ok(()) } else { Err(Error::PermissionDenied) }
    }

    /// Whether `c` may read `[key, range_end)` (etcd's range rules for the end).
    pub fn range_permitted(&self, c: &Caller, key: &[u8], range_end: &[u8]) -> Result<(), Error> {
        self.op_permitted(c, key, range_end, false)
    }

    /// Whether `c` may write `key`.
    pub fn put_permitted(&self, c: &Caller, key: &[u8]) -> Result<(), Error> {
        self.op_permitted(c, key, &[], true)
    }

    /// Whether `c` may delete `[key, range_end)`.
    pub fn delete_permitted(&self, c: &Caller, key: &[u8], range_end: &[u8]) -> Result<(), Error> {
        self.op_permitted(c, key, range_end, true)
    }

    /// Whether `c` may compact: with authentication on, a user who may write somewhere (root may everywhere).
    /// etcd 3.4 (and 3.6) lets anyone compact, even with no token, and a compaction erases every key's history;
    /// ferrokv refuses a caller with no user ("user name is empty") and a reader who may write nothing
    /// ("permission denied"), and no more, so that a writer such as kube-apiserver compacts as it does on etcd.
    pub fn compact_permitted(&self, c: &Caller) -> Result<(), Error> {
        match self.perms_of(c)? {
            Some(u) if u.write.0.is_empty() => Err(Error::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// etcd's IsAdminPermitted: the caller holds the role root.
    pub fn admin_permitted(&self, c: &Caller) -> Result<(), Error> {
        if !self.enabled || c.internal {
            return Ok(());
        }
        if c.user.is_empty() {
            return Err(Error::UserEmpty);
        }
        match self.users.get(&c.user) {
            None => Err(Error::UserNotFound),
            Some(u) if u.root => Ok(()),
            Some(_) => Err(Error::PermissionDenied),
        }
    }

    /// Whether `caller` may run every part of `t`: read every compared range and every range read, write every put
    /// and deleted range (and read it when the previous values are asked for), and write the keys already under a
    /// lease a put attaches to, at every level of nesting.
    pub fn txn_permitted(
        &self,
        caller: &Caller,
        t: &pb::TxnRequest,
        lease_keys: &dyn Fn(i64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        use pb::request_op::Request;
        for c in &t.compare {
            self.range_permitted(caller, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure).filter_map(|o| o.request.as_ref()) {
            match op {
                Request::RequestRange(r) => self.range_permitted(caller, &r.key, &r.range_end)?,
                Request::RequestPut(p) => {
                    self.put_permitted(caller, &p.key)?;
                    if p.prev_kv {
                        self.range_permitted(caller, &p.key, &[])?;
                    }
                    if p.lease != 0 {
                        lease_keys(p.lease)?;
                    }
                }
                Request::RequestDeleteRange(d) => {
                    if d.prev_kv {
                        self.range_permitted(caller, &d.key, &d.range_end)?;
                    }
                    self.delete_permitted(caller, &d.key, &d.range_end)?;
                }
                Request::RequestTxn(t) => self.txn_permitted(caller, t, lease_keys)?,
            }
        }
        Ok(())
    }

    /// Whether `c` holds `role` (a user may read its own roles).
    pub fn has_role(&self, c: &Caller, role: &str) -> bool {
        self.users.get(&c.user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// The bcrypt hash to check a password of `user` against (`None`: no such user, or no password).
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).and_then(|u| u.hash.as_deref())
    }
}

/// The auth state and the simple tokens, shared by the apply thread and the services.
#[derive(Debug, Clone)]
pub struct Auth {
    state: Arc<RwLock<Arc<AuthState>>>,
    tokens: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    ttl: Duration,
    /// `--auth-token jwt,...`: tokens are signed and verified, not kept.
    jwt: Option<Arc<crate::apply::jwt::Jwt>>,
    /// `--client-cert-auth`: a request without a token is its client certificate's common name.
    cert_auth: bool,
}

impl Auth {
    /// The state of `store`; simple tokens lasting `ttl` after their last use, or JWT tokens of `jwt`;
    /// `cert_auth`: `--client-cert-auth`.
    pub fn load(
        store: &Store,
        ttl: Duration,
        jwt: Option<crate::apply::jwt::Jwt>,
        cert_auth: bool,
    ) -> Result<Auth, mvcc::Error> {
        let state = Arc::new(RwLock::new(Arc::new(AuthState::load(store)?)));
        Ok(Auth { state, tokens: Arc::default(), ttl, jwt: jwt.map(Arc::new), cert_auth })
    }

    /// The current state.
    pub fn current(&self) -> Arc<AuthState> {
        Arc::clone(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the state again from `store` (after an auth change, or a snapshot installed); tokens go when
    /// authentication is off.
    pub fn reload(&self, store: &Store) -> Result<(), mvcc::Error> {
        let next = Arc::new(AuthState::load(store)?);
        if !next.enabled {
            self.lock_tokens().clear();
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token an applied Authenticate hands out: the simple token `simple`, recorded; or a JWT signed for
    /// `user` at the current auth revision (`None` if signing failed).
    pub fn assign(&self, simple: String, user: String) -> Option<String> {
        if let Some(jwt) = &self.jwt {
            return jwt.sign(&user, self.current().revision).ok();
        }
        let deadline = Instant::now() + self.ttl;
        let mut tokens = self.lock_tokens();
        tokens.retain(|_, (_, d)| *d > Instant::now());
        tokens.insert(simple.clone(), (user, deadline));
        Some(simple)
    }

    /// Ends every token of `user` (deleted, or its password changed).
    pub fn invalidate(&self, user: &str) {
        self.lock_tokens().retain(|_, (u, _)| u != user);
    }

    /// Who a request comes from (etcd's AuthInfoFromCtx, then AuthInfoFromTLS): nobody when authentication is off;
    /// by its token if it has one: a token this member does not know, or that expired, is "invalid auth token", a
    /// known one lasts another TTL and speaks for its user at the current auth revision; else, with
    /// `--client-cert-auth`, the common name of the client's verified certificate (`cert_user`) at the current
    /// revision; else nobody.
    pub fn caller(&self, token: Option<&str>, cert_user: Option<&str>) -> Result<Caller, Error> {
        let state = self.current();
        if !state.enabled {
            return Ok(Caller::default());
        }
        let Some(token) = token else {
            return Ok(match cert_user.filter(|_| self.cert_auth) {
                Some(cn) => Caller { user: cn.to_string(), revision: state.revision, internal: false },
                None => Caller::default(),
            });
        };
        if let Some(jwt) = &self.jwt {
            // The revision is the token's: an older one than the current is refused by the checks.
            return match jwt.verify(token) {
                Some((user, revision)) => Ok(Caller { user, revision, internal: false }),
                None => Err(Error::InvalidAuthToken),
            };
        }
        let mut tokens = self.lock_tokens();
        match tokens.get_mut(token) {
            Some((user, deadline)) if *deadline > Instant::now() => {
                *deadline = Instant::now() + self.ttl;
                Ok(Caller { user: user.clone(), revision: state.revision, internal: false })
            }
            _ => Err(Error::InvalidAuthToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(perms: &[(&str, &str)]) -> Ranges {
        let mut r = Ranges::default();
        for (k, e) in perms {
            r.add(k.as_bytes(), e.as_bytes());
        }
        r
    }

    #[test]
    fn a_range_needs_the_union_to_cover_it() {
        let r = ranges(&[("a", "c"), ("c", "e"), ("k", "")]);
        assert!(r.covers(b"a", Some(b"e")), "two adjacent ranges cover their union");
        assert!(r.covers(b"b", Some(b"d")));
        assert!(!r.covers(b"a", Some(b"f")), "a gap at e");
        assert!(!r.covers(b"0", Some(b"b")), "starts below");
        assert!(r.covers(b"k", Some(b"k\0")), "one key as a range");
        assert!(!r.covers(b"k", Some(b"l")), "a key is not its prefix");
        assert!(!r.covers(b"a", None), "no range reaches the end");
        assert!(ranges(&[("m", "\0")]).covers(b"x", None), "from-key covers to the end");
        assert!(r.holds(b"d") && r.holds(b"k") && !r.holds(b"e") && !r.holds(b"k0"));
    }

    #[test]
    fn simple_tokens_last_their_ttl_after_their_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), &crate::apply::store::KEYSPACES, Default::default()).unwrap();
        let mut w = store.db().write().unwrap();
        w.put(store.db().keyspace(AUTH).unwrap(), ENABLED, &[1]).unwrap();
        w.commit().unwrap();
        let auth = Auth::load(&store, Duration::from_millis(300), None, false).unwrap();
        assert_eq!(auth.assign("tok.5".into(), "alice".into()).as_deref(), Some("tok.5"));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(150));
            assert_eq!(auth.caller(Some("tok.5"), None).unwrap().user, "alice", "each use extends it");
        }
        std::thread::sleep(Duration::from_millis(450));
        assert!(matches!(auth.caller(Some("tok.5"), None), Err(Error::InvalidAuthToken)), "unused, it expires");
        auth.assign("tok.6".into(), "bob".into());
        auth.invalidate("bob");
        assert!(matches!(auth.caller(Some("tok.6"), None), Err(Error::InvalidAuthToken)), "its user's tokens end");
        assert!(matches!(auth.caller(Some("made.up"), None), Err(Error::InvalidAuthToken)));
        assert_eq!(auth.caller(None, Some("carol")).unwrap(), Caller::default(), "no certificate auth configured");
    }

    #[test]
    fn checks_follow_etcds_order_of_refusals() {
        let mut state = AuthState { enabled: true, revision: 5, users: HashMap::new() };
        let reader = UserPerms { read: ranges(&[("/a/", "/a0")]), ..UserPerms::default() };
        state.users.insert("alice".into(), reader);
        state.users.insert("root".into(), UserPerms { root: true, ..UserPerms::default() });
        let alice = Caller { user: "alice".into(), revision: 5, internal: false };
        assert!(state.range_permitted(&alice, b"/a/x", b"").is_ok());
        assert!(state.range_permitted(&alice, b"/a/", b"/a0").is_ok());
        assert!(matches!(state.range_permitted(&alice, b"/a/", b"\0"), Err(Error::PermissionDenied)));
        assert!(matches!(state.put_permitted(&alice, b"/a/x"), Err(Error::PermissionDenied)));
        assert!(matches!(state.range_permitted(&Caller::default(), b"/a/x", b""), Err(Error::UserEmpty)));
        let old = Caller { revision: 4, ..alice.clone() };
        assert!(matches!(state.range_permitted(&old, b"/a/x", b""), Err(Error::AuthOldRevision)));
        assert!(matches!(state.admin_permitted(&alice), Err(Error::PermissionDenied)));
        let root = Caller { user: "root".into(), revision: 5, internal: false };
        assert!(state.admin_permitted(&root).is_ok() && state.put_permitted(&root, b"anything").is_ok());
        assert!(state.put_permitted(&Caller { internal: true, ..Caller::default() }, b"x").is_ok());
        state.enabled = false;
        assert!(state.put_permitted(&Caller::default(), b"x").is_ok(), "everything goes when auth is off");
    }
}
