//! The two meta slots on disk, and the one right to write them.
//!
//! **Invariants.** Only the holder of a [`MetaIo`] (behind `Shared::meta_io`, see `sync`) writes a meta page or
//! syncs for one. `slots` is the transaction id each slot holds on disk, exactly, and only grows: a meta older than
//! the newest durable one is never written, and a new one goes into the slot holding the older, so a torn write
//! always leaves the newest durable meta intact. Every data page written before the call is synced before the meta.
//! A failed write leaves its slot unknown, so every later write is refused.

use crate::error::{Error, Result};
use crate::page::layout::{PageId, TxnId};
use crate::page::meta::Meta;
use crate::page::pager::Pager;

/// The meta slots on disk, and the right to write them.
#[derive(Debug)]
pub(crate) struct MetaIo {
    /// Transaction id each slot holds on disk.
    pub(crate) slots: [TxnId; 2],
    /// Why meta writes stopped: a failed write left a slot in an unknown state.
    failed: Option<String>,
}

impl MetaIo {
    pub(crate) fn new(slots: [TxnId; 2]) -> Self {
        MetaIo { slots, failed: None }
    }

    /// Makes `meta` durable unless a meta at least as new already is: every data page written so far, then
    /// `meta` into the slot holding the older meta, then that meta. Says whether it wrote.
    pub(crate) fn write(&mut self, pager: &Pager, meta: &Meta) -> Result<bool> {
        if let Some(why) = &self.failed {
            return Err(Error::Poisoned(why.clone()));
        }
        if self.slots.iter().any(|&t| t >= meta.txn) {
            return Ok(false);
        }
        let slot = if self.slots[0] <= self.slots[1] { 0 } else { 1 };
        let written =
            pager.sync().and_then(|()| pager.write_meta(slot, &meta.encode(PageId(slot)))).and_then(|()| pager.sync());
        match written {
            Ok(()) => {
                self.slots[slot as usize] = meta.txn;
                Ok(true)
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}
