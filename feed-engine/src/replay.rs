//! Deterministic replay of a shared log: while an event is applied under a [`Stamp`], the engine
//! takes the event's time and id instead of its own clock and counters, records the event's log
//! sequence in the same atomic batch as the change, and leaves the fsync to the applier (the log
//! is the durable copy). Cluster nodes use it so every node applies the same event identically.

use std::cell::Cell;

/// What an event fixes for its application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The event's sequence in the log; written with every batch the event produces.
    pub seq: u64,
    /// The event's time (ms since the Unix epoch), used instead of the engine's clock.
    pub now_ms: u64,
    /// The id minted for the event (a new user's or post's), when it creates one.
    pub id: Option<u64>,
}

thread_local! {
    static STAMP: Cell<Option<Stamp>> = const { Cell::new(None) };
}

/// Clears the stamp when dropped, so a panic inside `f` cannot leak it to the next call.
struct Reset(Option<Stamp>);

impl Drop for Reset {
    fn drop(&mut self) {
        STAMP.with(|s| s.set(self.0));
    }
}

/// Runs `f` with `stamp` in force on this thread.
pub fn stamped<T>(stamp: Stamp, f: impl FnOnce() -> T) -> T {
    let prev = STAMP.with(|s| s.replace(Some(stamp)));
    let _reset = Reset(prev);
    f()
}

/// The stamp in force on this thread, if any.
pub(crate) fn current() -> Option<Stamp> {
    STAMP.with(|s| s.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_scoped_and_survives_a_panic() {
        let s = Stamp {
            seq: 7,
            now_ms: 1,
            id: Some(3),
        };
        assert_eq!(stamped(s, current), Some(s));
        assert_eq!(current(), None);
        let r = std::panic::catch_unwind(|| stamped(s, || panic!("boom")));
        assert!(r.is_err());
        assert_eq!(current(), None, "a panic must not leave the stamp set");
    }
}
