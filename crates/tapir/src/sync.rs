//! The engine's locks and concurrent maps, and how they are taken.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dashmap::DashMap;

/// The engine's concurrent maps. Their keys are numbers the engine assigns itself (handles, session
/// and request numbers, provider leg IDs), so a fast seeded hash is enough.
pub(crate) type FastDashMap<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

/// Locks a mutex, carrying on if a panicking thread poisoned it: every critical section in the engine
/// leaves its data consistent before doing anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads a read-write lock, carrying on past poisoning as [`lock`] does.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes a read-write lock, carrying on past poisoning as [`lock`] does.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
