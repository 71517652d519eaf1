//! A RangeRequest as mvcc reads it: the options mvcc applies itself (limit, revision, count and keys only). The
//! shaping mvcc leaves to the caller (etcd's sort orders and revision filters, then the limit) is the api layer's
//! (`api::convert::shape_range`); a Txn's ranges are read here and shaped there too.

use mvcc::RangeOptions;

use crate::proto::etcdserverpb as pb;

/// A RangeRequest's options for mvcc (sorting and revision filters are applied by `api::convert::shape_range`).
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
