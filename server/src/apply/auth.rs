//! Users, roles and permissions as the store keeps them, and the Auth service's requests applied to them in log
//! order with etcd 3.4's rules and errors.
//!
//! **On-disk format** (three keyspaces, etcd's bucket names and encodings, so snapshots carry them both ways):
//! - `auth`: `authEnabled` → one byte, 1 or 0; `authRevision` → u64 big-endian (etcd's auth revision, raised by
//!   every change; a store without it is at revision 1, as the snapshot export writes it).
//! - `authUsers`: user name → `authpb.User` {name, password (the bcrypt hash; empty for a `no_password` user),
//!   roles (sorted), options}.
//! - `authRoles`: role name → `authpb.Role` {name, keyPermission (sorted by key)}.
//!
//! **Rules** (etcd's): names may not be empty; the role `root` needs no record to be granted; granting a role a
//! user already has changes nothing; granting a permission for a key and range end the role already has changes
//! its type; deleting a role revokes it from every user. Enabling needs a user `root` holding the role `root`;
//! with authentication enabled, `root` may not be deleted, nor lose the `root` role. An Authenticate issues
//! `<prefix>.<index>` for a user with a password (the proposer checked it). Who may make each request is
//! `perms`'s business, checked before this is applied.
//!
//! **Threading**: applied by the apply thread only, inside the store write of the entry carrying the request;
//! an error discards that write, so a refused request changes nothing.

use std::ops::Bound;

use mvcc::{KeyspaceId, Store, StoreWrite};
use prost::Message as _;

use crate::error::Error;
use crate::proto::authpb;
use crate::request::AuthOp;

/// etcd's `auth` bucket.
pub const AUTH: &str = "auth";
/// etcd's `authUsers` bucket.
pub const USERS: &str = "authUsers";
/// etcd's `authRoles` bucket.
pub const ROLES: &str = "authRoles";
/// The `auth` keys.
pub const ENABLED: &[u8] = b"authEnabled";
pub const REVISION: &[u8] = b"authRevision";
/// The auth revision of a store that has never recorded one.
pub const FIRST_REVISION: u64 = 1;

/// Whether an `authEnabled` record says authentication is on.
pub fn enabled_in(record: Option<&[u8]>) -> bool {
    record.is_some_and(|v| v == [1])
}

/// The auth revision an `authRevision` record holds ([`FIRST_REVISION`] without one).
pub fn revision_in(record: Option<&[u8]>) -> u64 {
    record.and_then(|v| <[u8; 8]>::try_from(v).ok()).map_or(FIRST_REVISION, u64::from_be_bytes)
}

/// The auth revision `store` holds (`etcd_debugging_auth_revision`).
pub fn revision_of(store: &mvcc::Store) -> Result<u64, mvcc::Error> {
    let db = store.db();
    let r = db.read();
    Ok(revision_in(r.get(db.keyspace(AUTH)?, REVISION)?))
}

/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// What an applied auth request answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Done,
    Status {
        enabled: bool,
        revision: u64,
    },
    /// A user's roles.
    UserRoles(Vec<String>),
    Users(Vec<String>),
    /// A role's permissions.
    Permissions(Vec<authpb::Permission>),
    Roles(Vec<String>),
    /// An Authenticate's token (the member records it, see `perms::Auth::assign`).
    Token(String),
}

/// The auth keyspaces of a store.
#[derive(Debug, Clone, Copy)]
struct Spaces {
    auth: KeyspaceId,
    users: KeyspaceId,
    roles: KeyspaceId,
}

fn corrupt(what: &'static str) -> mvcc::Error {
    mvcc::Error::Keyspace(what.into(), "a record that does not decode")
}

/// An auth request applied to `w` (which the caller commits, or drops on an error): the answer, or etcd's
/// refusal. The outer error is the store's.
pub fn apply(
    store: &Store,
    w: &mut StoreWrite<'_>,
    op: &AuthOp,
    index: u64,
) -> Result<Result<Answer, Error>, mvcc::Error> {
    let db = store.db();
    let s = Spaces { auth: db.keyspace(AUTH)?, users: db.keyspace(USERS)?, roles: db.keyspace(ROLES)? };
    let enabled = enabled_in(w.db().get(s.auth, ENABLED)?.as_deref());
    let answer = match op {
        AuthOp::Status(_) => return Ok(Ok(Answer::Status { enabled, revision: revision(w, s)? })),
        AuthOp::Enable(_) => {
            if enabled {
                return Ok(Ok(Answer::Done));
            }
            match user(w, s, ROOT)? {
                None => return Ok(Err(Error::RootUserNotExist)),
                Some(root) if !root.roles.iter().any(|r| r == ROOT) => return Ok(Err(Error::RootRoleNotExist)),
                Some(_) => {}
            }
            w.db().put(s.auth, ENABLED, &[1])?;
            // etcd 3.4 leaves the auth revision where it is on enabling (it raises it on disabling), so the
            // revision in a token is the same number on both servers (tests/jwt_vs_etcd.rs).
            return Ok(Ok(Answer::Done));
        }
        AuthOp::Disable(_) => {
            if !enabled {
                return Ok(Ok(Answer::Done));
            }
            w.db().put(s.auth, ENABLED, &[0])?;
            Ok(Answer::Done)
        }
        AuthOp::Authenticate(a) => {
            if !enabled {
                return Ok(Err(Error::AuthNotEnabled));
            }
            return Ok(match user(w, s, &a.name)? {
                Some(u) if !u.options.is_some_and(|o| o.no_password) => {
                    Ok(Answer::Token(format!("{}.{index}", a.simple_token)))
                }
                _ => Err(Error::AuthFailed),
            });
        }
        AuthOp::UserAdd(r) => {
            if r.name.is_empty() {
                return Ok(Err(Error::UserEmpty));
            }
            if user(w, s, &r.name)?.is_some() {
                return Ok(Err(Error::UserAlreadyExist));
            }
            let options = r.options.unwrap_or_default();
            let password = if options.no_password { Vec::new() } else { r.hashed_password.clone().into_bytes() };
            let u =
                authpb::User { name: r.name.clone().into_bytes(), password, roles: Vec::new(), options: Some(options) };
            put_user(w, s, &u)?;
            Ok(Answer::Done)
        }
        AuthOp::UserGet(r) => match user(w, s, &r.name)? {
            Some(u) => return Ok(Ok(Answer::UserRoles(u.roles))),
            None => return Ok(Err(Error::UserNotFound)),
        },
        AuthOp::UserList(_) => return Ok(Ok(Answer::Users(names(store, s.users)?))),
        AuthOp::RoleList(_) => return Ok(Ok(Answer::Roles(names(store, s.roles)?))),
        AuthOp::RoleGet(r) => match role(w, s, &r.role)? {
            Some(role) => return Ok(Ok(Answer::Permissions(role.key_permission))),
            None => return Ok(Err(Error::RoleNotFound)),
        },
        AuthOp::UserDelete(r) => {
            if enabled && r.name == ROOT {
                return Ok(Err(Error::InvalidAuthMgmt));
            }
            if !w.db().delete(s.users, r.name.as_bytes())? {
                return Ok(Err(Error::UserNotFound));
            }
            Ok(Answer::Done)
        }
        AuthOp::UserChangePassword(r) => {
            let Some(mut u) = user(w, s, &r.name)? else { return Ok(Err(Error::UserNotFound)) };
            u.password = r.hashed_password.clone().into_bytes();
            put_user(w, s, &u)?;
            Ok(Answer::Done)
        }
        AuthOp::UserGrantRole(r) => {
            let Some(mut u) = user(w, s, &r.user)? else { return Ok(Err(Error::UserNotFound)) };
            if r.role != ROOT && role(w, s, &r.role)?.is_none() {
                return Ok(Err(Error::RoleNotFound));
            }
            match u.roles.binary_search(&r.role) {
                // Already granted: nothing changes, not even the revision.
                Ok(_) => return Ok(Ok(Answer::Done)),
                Err(at) => u.roles.insert(at, r.role.clone()),
            }
            put_user(w, s, &u)?;
            Ok(Answer::Done)
        }
        AuthOp::UserRevokeRole(r) => {
            if enabled && r.name == ROOT && r.role == ROOT {
                return Ok(Err(Error::InvalidAuthMgmt));
            }
            let Some(mut u) = user(w, s, &r.name)? else { return Ok(Err(Error::UserNotFound)) };
            let before = u.roles.len();
            u.roles.retain(|role| *role != r.role);
            if u.roles.len() == before {
                return Ok(Err(Error::RoleNotGranted));
            }
            put_user(w, s, &u)?;
            Ok(Answer::Done)
        }
        AuthOp::RoleAdd(r) => {
            if r.name.is_empty() {
                return Ok(Err(Error::RoleEmpty));
            }
            if role(w, s, &r.name)?.is_some() {
                return Ok(Err(Error::RoleAlreadyExist));
            }
            put_role(w, s, &authpb::Role { name: r.name.clone().into_bytes(), key_permission: Vec::new() })?;
            Ok(Answer::Done)
        }
        AuthOp::RoleDelete(r) => {
            if enabled && r.role == ROOT {
                return Ok(Err(Error::InvalidAuthMgmt));
            }
            if !w.db().delete(s.roles, r.role.as_bytes())? {
                return Ok(Err(Error::RoleNotFound));
            }
            // Revoked from every user who has it (users are read from the last commit: this write changed none).
            for name in names(store, s.users)? {
                if let Some(mut u) = user(w, s, &name)?
                    && u.roles.contains(&r.role)
                {
                    u.roles.retain(|role| *role != r.role);
                    put_user(w, s, &u)?;
                }
            }
            Ok(Answer::Done)
        }
        AuthOp::RoleGrantPermission(r) => {
            let Some(mut role) = role(w, s, &r.name)? else { return Ok(Err(Error::RoleNotFound)) };
            let perm = r.perm.clone().unwrap_or_default();
            let perms = &mut role.key_permission;
            // As etcd: the first permission whose key is not below the new one is updated if it is the same
            // range; otherwise the new one goes after every permission whose key is not above its own.
            let first = perms.partition_point(|p| p.key < perm.key);
            match perms.get_mut(first) {
                Some(p) if p.key == perm.key && p.range_end == perm.range_end => p.perm_type = perm.perm_type,
                _ => {
                    let at = perms.partition_point(|p| p.key <= perm.key);
                    perms.insert(at, perm);
                }
            }
            put_role(w, s, &role)?;
            Ok(Answer::Done)
        }
        AuthOp::RoleRevokePermission(r) => {
            let Some(mut role) = role(w, s, &r.role)? else { return Ok(Err(Error::RoleNotFound)) };
            let before = role.key_permission.len();
            role.key_permission.retain(|p| !(p.key == r.key && p.range_end == r.range_end));
            if role.key_permission.len() == before {
                return Ok(Err(Error::PermissionNotGranted));
            }
            put_role(w, s, &role)?;
            Ok(Answer::Done)
        }
    };
    // Every other change raises the auth revision (the reads and Enable returned above).
    let next = revision(w, s)? + 1;
    w.db().put(s.auth, REVISION, &next.to_be_bytes())?;
    Ok(answer)
}

fn revision(w: &mut StoreWrite<'_>, s: Spaces) -> Result<u64, mvcc::Error> {
    Ok(revision_in(w.db().get(s.auth, REVISION)?.as_deref()))
}

fn user(w: &mut StoreWrite<'_>, s: Spaces, name: &str) -> Result<Option<authpb::User>, mvcc::Error> {
    match w.db().get(s.users, name.as_bytes())? {
        Some(v) => authpb::User::decode(v.as_slice()).map(Some).map_err(|_| corrupt(USERS)),
        None => Ok(None),
    }
}

fn role(w: &mut StoreWrite<'_>, s: Spaces, name: &str) -> Result<Option<authpb::Role>, mvcc::Error> {
    match w.db().get(s.roles, name.as_bytes())? {
        Some(v) => authpb::Role::decode(v.as_slice()).map(Some).map_err(|_| corrupt(ROLES)),
        None => Ok(None),
    }
}

fn put_user(w: &mut StoreWrite<'_>, s: Spaces, u: &authpb::User) -> Result<(), mvcc::Error> {
    w.db().put(s.users, &u.name, &u.encode_to_vec())
}

fn put_role(w: &mut StoreWrite<'_>, s: Spaces, r: &authpb::Role) -> Result<(), mvcc::Error> {
    w.db().put(s.roles, &r.name, &r.encode_to_vec())
}

/// The names in a keyspace, in byte order (etcd's listing order), as of the last commit.
fn names(store: &Store, ks: KeyspaceId) -> Result<Vec<String>, mvcc::Error> {
    let r = store.db().read();
    let mut out = Vec::new();
    for item in r.range(ks, Bound::Unbounded, Bound::Unbounded)? {
        let (k, _) = item?;
        out.push(String::from_utf8_lossy(k).into_owned());
    }
    Ok(out)
}
