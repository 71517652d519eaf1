//! One key's history: its generations. A generation runs from the put that created the key to the delete that
//! ended it (whose tombstone revision is its last entry); the last generation is the live one (possibly empty).
//!
//! **Invariants** (checked by [`KeyIndex::check`]):
//! 1. Revisions strictly increase across the whole index, generation after generation.
//! 2. Every generation but the last is non-empty and ends with its tombstone; the last never holds a tombstone.
//! 3. A generation's `created` (main revision) is at or before its first remaining revision (compaction may have
//!    removed the creating put; reads still report the key's create revision).

use crate::revision::Revision;

/// A run of a key's life from creation to deletion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generation {
    /// Version of the key at its latest revision in this generation.
    pub version: i64,
    /// Main revision of the put that created the key in this generation.
    pub created: i64,
    pub revs: Vec<Revision>,
}

/// A key's generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    pub generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex { generations: vec![Generation::default()] }
    }
}

/// What a key looked like at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible {
    /// The revision holding the value.
    pub modified: Revision,
    pub created: i64,
    pub version: i64,
}

impl KeyIndex {
    fn live(&mut self) -> &mut Generation {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let n = self.generations.len();
        &mut self.generations[n - 1]
    }

    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) {
        let g = self.live();
        if g.revs.is_empty() {
            g.created = rev.main;
        }
        g.revs.push(rev);
        g.version += 1;
    }

    /// Records a stored put while rebuilding: creation and version come from the record, since compaction may
    /// have removed earlier revisions of the generation.
    pub fn restore_put(&mut self, rev: Revision, created: i64, version: i64) {
        let g = self.live();
        if g.revs.is_empty() {
            g.created = created;
        }
        g.revs.push(rev);
        g.version = version;
    }

    /// Records a delete at `rev` (the key must be live): ends the generation and starts an empty one.
    pub fn tombstone(&mut self, rev: Revision) {
        self.live().revs.push(rev);
        self.generations.push(Generation::default());
    }

    /// etcd's `keep(at)`: the latest revision `<= at`, unless it is a deletion (the end of a closed generation).
    pub fn kept_at(&self, at: i64) -> Option<Revision> {
        let last = self.generations.len() - 1;
        for (gi, g) in self.generations.iter().enumerate().rev() {
            if let Some(pos) = g.revs.iter().rposition(|r| r.main <= at) {
                let tombstone = pos == g.revs.len() - 1 && gi != last;
                return (!tombstone).then_some(g.revs[pos]);
            }
        }
        None
    }

    /// The live generation's latest revision, if the key exists now.
    pub fn current(&self) -> Option<Visible> {
        let g = self.generations.last()?;
        g.revs.last().map(|&modified| Visible { modified, created: g.created, version: g.version })
    }

    /// The key as of main revision `at`, or `None` if it did not exist then.
    pub fn at(&self, at: i64) -> Option<Visible> {
        let n = self.generations.len();
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(first) = g.revs.first() else { continue };
            if first.main > at {
                continue;
            }
            let is_live = i + 1 == n;
            let idx = g.revs.partition_point(|r| r.main <= at) - 1;
            // A closed generation's last revision is its tombstone: at or after it, the key was deleted.
            if !is_live && idx + 1 == g.revs.len() {
                return None;
            }
            // `g.version` counts every put of the generation (compacted ones included); subtract the puts after
            // `idx`. In a closed generation one of the later revisions is the tombstone, which is not a put.
            let version = g.version - (g.revs.len() - 1 - idx) as i64 + i64::from(!is_live);
            return Some(Visible { modified: g.revs[idx], created: g.created, version });
        }
        None
    }

    /// The key (`None`: no index, a key never written) as of main revision `at`, or now if `at` is `None`.
    pub fn visible(ki: Option<&KeyIndex>, at: Option<i64>) -> Option<Visible> {
        let ki = ki?;
        match at {
            Some(at) => ki.at(at),
            None => ki.current(),
        }
    }

    /// Every revision still held, in order.
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations.iter().flat_map(|g| g.revs.iter().copied())
    }

    /// Drops history superseded at `at`: returns the revisions `<= at` the file keeps (still needed to read at `at`
    /// or later, or to tell a watch from `at` of a deletion at `at`). Afterwards the index may be empty (see
    /// [`KeyIndex::is_empty`]).
    pub fn compact(&mut self, at: i64, keep: &mut Vec<Revision>) {
        // The first generation still alive after `at`: one not yet closed by a tombstone at or before `at`.
        let mut gi = 0;
        while gi + 1 < self.generations.len() && self.generations[gi].revs.last().is_some_and(|r| r.main <= at) {
            gi += 1;
        }
        // A deletion at exactly `at` stays in the file (not in the index): a watch may start at `at`, the oldest
        // revision still allowed, and must see it (etcd #18089). The next compaction deletes it, as no index holds it.
        if let Some(tombstone) = gi.checked_sub(1).and_then(|i| self.generations[i].revs.last())
            && tombstone.main == at
        {
            keep.push(*tombstone);
        }
        self.generations.drain(..gi);
        let g = &mut self.generations[0];
        let below = g.revs.partition_point(|r| r.main <= at);
        // Every generation closed at or before `at` is gone (tombstone included); this one, if closed, closes after
        // `at`, so the newest revision at or before `at` is a put that reads at `at` and later still need.
        if below > 0 {
            g.revs.drain(..below - 1);
            keep.push(g.revs[0]);
        }
    }

    /// Whether nothing is left (no revision at all).
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.revs.is_empty())
    }

    /// Verifies the module invariants.
    pub fn check(&self) -> Result<(), String> {
        let mut last: Option<Revision> = None;
        let n = self.generations.len();
        for (i, g) in self.generations.iter().enumerate() {
            if i + 1 < n && g.revs.is_empty() {
                return Err("empty generation before the last".into());
            }
            if g.revs.first().is_some_and(|r| r.main < g.created) {
                return Err("generation created after its first revision".into());
            }
            for r in &g.revs {
                if last.is_some_and(|l| l >= *r) {
                    return Err(format!("revision {r} does not increase"));
                }
                last = Some(*r);
            }
        }
        Ok(())
    }
}

/// The changes one write transaction made to a key, oldest first, every one newer than the key's committed
/// history. A transaction keeps these instead of a copy of the key's index, so a write to a key with a long
/// history costs what a write to a fresh key costs; [`Tail::apply_to`] appends them at commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    /// `(revision, is_tombstone)`.
    ops: Vec<(Revision, bool)>,
}

impl Tail {
    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) {
        self.ops.push((rev, false));
    }

    /// Records a delete at `rev` (the key must be live as this tail sees it).
    pub fn tombstone(&mut self, rev: Revision) {
        self.ops.push((rev, true));
    }

    /// The key as of main revision `at` (`None`: the latest), seen through `base`, its committed index, and then
    /// this tail. O(changes in the tail), whatever the length of `base`.
    pub fn visible(&self, base: Option<&KeyIndex>, at: Option<i64>) -> Option<Visible> {
        let upto = at.map_or(self.ops.len(), |at| self.ops.partition_point(|(r, _)| r.main <= at));
        if upto == 0 {
            return KeyIndex::visible(base, at);
        }
        // Every change of the tail is newer than `base`, so `base`'s latest state is where the replay starts.
        let mut state = base.and_then(KeyIndex::current);
        for &(rev, tombstone) in &self.ops[..upto] {
            state = if tombstone {
                None
            } else {
                Some(match state {
                    Some(v) => Visible { modified: rev, created: v.created, version: v.version + 1 },
                    None => Visible { modified: rev, created: rev.main, version: 1 },
                })
            };
        }
        state
    }

    /// Appends the tail to the committed index `ki`.
    pub fn apply_to(self, ki: &mut KeyIndex) {
        for (rev, tombstone) in self.ops {
            if tombstone { ki.tombstone(rev) } else { ki.put(rev) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: i64) -> Revision {
        Revision::new(m, 0)
    }

    #[test]
    fn kept_at_is_the_latest_revision_unless_a_deletion() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(5));
        ki.tombstone(r(7));
        ki.put(r(9));
        assert_eq!(ki.kept_at(1), None);
        assert_eq!(ki.kept_at(6), Some(r(5)));
        assert_eq!(ki.kept_at(7), None, "deleted at 7");
        assert_eq!(ki.kept_at(8), None);
        assert_eq!(ki.kept_at(20), Some(r(9)));
    }

    #[test]
    fn visibility_across_generations() {
        let mut k = KeyIndex::default();
        k.put(r(2));
        k.put(r(4));
        k.tombstone(r(6));
        k.put(r(8));
        assert_eq!(k.at(1), None);
        assert_eq!(k.at(3), Some(Visible { modified: r(2), created: 2, version: 1 }));
        assert_eq!(k.at(5), Some(Visible { modified: r(4), created: 2, version: 2 }));
        assert_eq!(k.at(6), None);
        assert_eq!(k.at(7), None);
        assert_eq!(k.at(9), Some(Visible { modified: r(8), created: 8, version: 1 }));
        assert_eq!(k.current().map(|v| v.modified), Some(r(8)));
        k.check().unwrap();
    }

    #[test]
    fn compaction_keeps_what_later_reads_need() {
        let mut k = KeyIndex::default();
        for m in [2, 3, 4] {
            k.put(r(m));
        }
        k.tombstone(r(5));
        k.put(r(7));
        k.put(r(9));
        let mut keep = Vec::new();
        k.compact(3, &mut keep);
        assert_eq!(keep, vec![r(3)]);
        assert_eq!(k.at(3).map(|v| (v.modified, v.version)), Some((r(3), 2)), "version survives compaction");
        let mut keep = Vec::new();
        k.compact(5, &mut keep);
        assert_eq!(keep, vec![r(5)], "the file keeps a deletion at the compaction point, for a watch from there");
        assert_eq!(k.generations.len(), 1, "the index drops the deleted generation, tombstone included");
        let mut keep = Vec::new();
        k.compact(6, &mut keep);
        assert!(keep.is_empty(), "no index holds it now, so the next compaction deletes it from the file");
        let mut keep = Vec::new();
        k.compact(8, &mut keep);
        assert_eq!(keep, vec![r(7)]);
        assert_eq!(k.at(8).map(|v| v.modified), Some(r(7)));
        k.tombstone(r(10));
        let mut keep = Vec::new();
        k.compact(10, &mut keep);
        assert!(k.is_empty(), "a key deleted at or before the compaction point vanishes from the index");
        assert_eq!(keep, vec![r(10)]);
        k.check().unwrap();
    }

    /// A tail seen through its base answers as the base with the tail applied, at every revision.
    #[test]
    fn tail_reads_as_if_applied() {
        let mut base = KeyIndex::default();
        base.put(r(2));
        base.put(r(3));
        base.tombstone(r(4));
        base.put(r(5));
        let mut tail = Tail::default();
        tail.put(r(7));
        tail.tombstone(r(8));
        tail.put(r(9));
        tail.put(r(10));
        let mut applied = base.clone();
        tail.clone().apply_to(&mut applied);
        applied.check().unwrap();
        for at in 0..12 {
            assert_eq!(tail.visible(Some(&base), Some(at)), applied.at(at), "at {at}");
        }
        assert_eq!(tail.visible(Some(&base), None), applied.current());
        let mut fresh = KeyIndex::default();
        tail.clone().apply_to(&mut fresh);
        for at in 0..12 {
            assert_eq!(tail.visible(None, Some(at)), fresh.at(at), "fresh key at {at}");
        }
        assert_eq!(Tail::default().visible(Some(&base), None), base.current());
    }
}
