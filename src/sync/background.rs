//! The journal work of the sync stage that runs beside the MySQL writes: reading the
//! next batch, and the local cleanup after a commit. Both run on the blocking pool; the
//! cleanup of a batch is only ever started after its COMMIT returned Ok.

use std::sync::Arc;

use super::batch::{self, Batch, Limits};
use super::SyncError;
use crate::journal::{now_ms, Journal, JournalError, LastSync};

/// Journal work on the blocking pool.
type Task<T> = tokio::task::JoinHandle<Result<T, JournalError>>;

/// Waits for a journal task and passes its result on.
async fn finish<T>(task: Task<T>, what: &str) -> Result<T, SyncError> {
    task.await
        .map_err(|e| SyncError::Internal(format!("{what} died: {e}")))?
        .map_err(SyncError::from)
}

/// The journal work that runs while MySQL writes a batch.
pub struct Background {
    journal: Arc<Journal>,
    journal_id: String,
    /// The batch after a sequence number, read from the journal while the batch up to
    /// that number is written.
    next: Option<(u64, Task<Option<Batch>>)>,
    /// The local cleanup after the latest commit. At most one runs at a time, so they
    /// finish in commit order and `last_sync` never goes back.
    cleanup: Option<Task<()>>,
}

impl Background {
    pub fn new(journal: Arc<Journal>, journal_id: String) -> Background {
        Background {
            journal,
            journal_id,
            next: None,
            cleanup: None,
        }
    }

    fn build(&self, after: u64, limits: Limits) -> Task<Option<Batch>> {
        let (journal, id) = (self.journal.clone(), self.journal_id.clone());
        tokio::task::spawn_blocking(move || batch::build(&journal, &id, after, limits))
    }

    /// Starts reading the batch after sequence number `after`, to be taken by
    /// [`Background::batch`] once the batch up to `after` is committed.
    pub fn read_ahead(&mut self, after: u64, limits: Limits) {
        self.next = Some((after, self.build(after, limits)));
    }

    /// The batch after `watermark` (None: the queue is drained): the one read ahead when
    /// it starts there, else one read now.
    pub async fn batch(
        &mut self,
        watermark: u64,
        limits: Limits,
    ) -> Result<Option<Batch>, SyncError> {
        if self
            .next
            .as_ref()
            .is_some_and(|(after, _)| *after != watermark)
        {
            self.drop_next().await;
        }
        let task = match self.next.take() {
            Some((_, task)) => task,
            None => self.build(watermark, limits),
        };
        finish(task, "batch builder").await
    }

    /// Forgets the batch read ahead (after a failed write it may follow a batch MySQL
    /// does not have), once its builder is done with the journal.
    pub async fn drop_next(&mut self) {
        if let Some((_, task)) = self.next.take() {
            // Its result is of no use: whatever went wrong there is found again when
            // the batch is read anew.
            let _ = task.await;
        }
    }

    /// Waits for the running cleanup, if any.
    pub async fn cleaned(&mut self) -> Result<(), SyncError> {
        match self.cleanup.take() {
            Some(task) => finish(task, "journal cleanup").await,
            None => Ok(()),
        }
    }

    /// Drops the queue entries up to `watermark`, which MySQL has committed, and records
    /// the sync (`pages` so far) for `status`, once the previous cleanup is done.
    pub async fn clean_up(&mut self, watermark: u64, pages: u64) -> Result<(), SyncError> {
        self.cleaned().await?;
        let journal = self.journal.clone();
        self.cleanup = Some(tokio::task::spawn_blocking(move || {
            journal.complete_sync(watermark)?;
            journal.record_last_sync(&LastSync {
                at_ms: now_ms(),
                watermark,
                pages,
            })
        }));
        Ok(())
    }

    /// Waits for everything still running, so that no journal work outlives the stage.
    pub async fn settle(&mut self) -> Result<(), SyncError> {
        self.drop_next().await;
        self.cleaned().await
    }
}
