//! Authentication state as the store keeps it: etcd's own layout, so that snapshots carry it both ways and the
//! enforcement (issue 16) reads what an etcd snapshot brought.
//!
//! **On-disk format** (three keyspaces, etcd's bucket names and encodings):
//! - `auth`: `authEnabled` → one byte, 1 or 0; `authRevision` → u64 big-endian (etcd's auth revision).
//! - `authUsers`: user name → `authpb.User` {name, password (the bcrypt hash), roles, options}.
//! - `authRoles`: role name → `authpb.Role` {name, keyPermission}.
//!
//! Written today only by `ferrokv snapshot restore` and the in-place conversion (`backup::import`), which refuse a
//! snapshot with authentication enabled, since nothing enforces it yet; read by the snapshot export.

/// etcd's `auth` bucket.
pub const AUTH: &str = "auth";
/// etcd's `authUsers` bucket.
pub const USERS: &str = "authUsers";
/// etcd's `authRoles` bucket.
pub const ROLES: &str = "authRoles";
/// The `auth` keys.
pub const ENABLED: &[u8] = b"authEnabled";
pub const REVISION: &[u8] = b"authRevision";
