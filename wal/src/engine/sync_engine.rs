//! The sync engine: `pwrite` every chunk, then `fdatasync`, on the calling (I/O) thread.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::{Done, Engine, Wake};
use crate::batch::{Batch, Buf};
use crate::error::{Error, Result};

/// pwrite + fdatasync, one batch at a time.
#[derive(Default)]
pub(crate) struct SyncEngine {
    done: Option<Done>,
}

impl Engine for SyncEngine {
    fn depth(&self) -> usize {
        1
    }

    fn in_flight(&self) -> usize {
        usize::from(self.done.is_some())
    }

    fn submit(&mut self, batch: Batch) -> Result<()> {
        for chunk in &batch.chunks {
            batch
                .file
                .write_all_at(chunk.buf.bytes(), chunk.offset)
                .map_err(|e| Error::io("write", batch.path.as_path(), e))?;
        }
        let t = Instant::now();
        crate::fs::sync_data(&batch.file, &batch.path)?;
        self.done = Some(Done { fsync: t.elapsed(), batch });
        Ok(())
    }

    fn wait(&mut self) -> Result<Vec<Done>> {
        Ok(self.done.take().into_iter().collect())
    }

    fn waker(&self) -> Option<std::sync::Arc<dyn Wake>> {
        None
    }

    fn register(&mut self, _bufs: &mut [Buf]) -> Result<()> {
        Ok(())
    }
}
