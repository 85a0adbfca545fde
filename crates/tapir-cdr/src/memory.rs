//! A store in memory: for tests, and for an embedded engine that wants records without a disk.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use tapir_core::cdr::CallDetailRecord;

use crate::{CdrQuery, CdrStore, Page, Retention, StoreError, StoredCdr};

/// Keeps records in a vector, in the order written. Lost when dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: Vec<StoredCdr>,
    next_id: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record, oldest first.
    pub fn all(&self) -> Vec<StoredCdr> {
        self.lock().records.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl CdrStore for MemoryStore {
    async fn insert(&self, records: Vec<CallDetailRecord>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for record in records {
            inner.next_id += 1;
            let id = inner.next_id;
            inner.records.push(StoredCdr { id, record });
        }
        Ok(())
    }

    async fn query(&self, query: &CdrQuery) -> Result<Page, StoreError> {
        let inner = self.lock();
        let mut records: Vec<StoredCdr> = inner
            .records
            .iter()
            .rev()
            .filter(|r| query.matches(r))
            .take(query.limit as usize + 1)
            .cloned()
            .collect();
        let next = if records.len() > query.limit as usize {
            records.truncate(query.limit as usize);
            records.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { records, next })
    }

    async fn purge(&self, retention: Retention, now: SystemTime) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.records.len();
        if let Some(age) = retention.max_age
            && let Some(cutoff) = now.checked_sub(age)
        {
            inner.records.retain(|r| r.record.started >= cutoff);
        }
        if let Some(max) = retention.max_records {
            let excess = inner.records.len().saturating_sub(max as usize);
            inner.records.drain(..excess);
        }
        Ok((before - inner.records.len()) as u64)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.lock().records.len() as u64)
    }
}
