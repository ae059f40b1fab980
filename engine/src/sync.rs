//! Locks that outlive a panic: one place for `.lock().unwrap_or_else(PoisonError::into_inner)`.
//!
//! The engine's mutexes guard data that stays consistent at every point a holder could panic
//! (each critical section either completes its update or changes nothing a reader relies on), so
//! a poisoned mutex is used as is rather than spreading the panic to every later caller.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Locks `m`, also after a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cv` with `guard`, also after a holder of its mutex panicked.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
