//! A Range as etcd answers it: the options mvcc applies itself (limit, revision, count and keys only), and the
//! shaping mvcc leaves to the caller (etcd's sort orders and revision filters, then the limit).

use mvcc::RangeOptions;

use crate::proto::etcdserverpb::{self as pb, range_request::SortOrder, range_request::SortTarget};
use crate::proto::mvccpb;

/// A RangeRequest's options for mvcc (sorting and revision filters are applied by [`shape_range`]).
pub fn range_options(r: &pb::RangeRequest) -> RangeOptions {
    let filtered =
        r.min_mod_revision > 0 || r.max_mod_revision > 0 || r.min_create_revision > 0 || r.max_create_revision > 0;
    let sorted = r.sort_order != pb::range_request::SortOrder::None as i32
        && !(r.sort_target == pb::range_request::SortTarget::Key as i32
            && r.sort_order == pb::range_request::SortOrder::Ascend as i32);
    RangeOptions {
        // With filters or a sort other than by key, every key is needed before the limit applies.
        limit: if filtered || sorted { 0 } else { r.limit },
        revision: r.revision,
        count_only: r.count_only,
        keys_only: r.keys_only,
    }
}

/// Applies etcd's sort order, revision filters and limit to a range result.
pub fn shape_range(
    r: &pb::RangeRequest,
    res: mvcc::RangeResult,
    header: Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    let count = res.count;
    let mut kvs: Vec<mvccpb::KeyValue> = res.kvs.into_iter().map(super::to_pb).collect();
    let keep = |kv: &mvccpb::KeyValue| {
        (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
    };
    kvs.retain(keep);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend; // etcd sorts ascending when only a target is given
    }
    if order != SortOrder::None {
        let by = |a: &mvccpb::KeyValue, b: &mvccpb::KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        // A stable sort either way: equal ones stay in key order, as etcd prints them.
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| by(b, a));
        } else {
            kvs.sort_by(by);
        }
    }
    // When the store applied the limit (no filters, no sort), keys beyond it exist iff the count exceeds it;
    // otherwise the limit applies here, after filters and sorting.
    let store_limited = !r.count_only && range_options(r).limit > 0;
    let mut more = store_limited && count > r.limit;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    pb::RangeResponse { header, kvs, more, count }
}
