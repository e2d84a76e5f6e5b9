//! Stopping long computations. A caller (the Python bindings) runs a computation under a hook;
//! the core polls it at checkpoints between bounded steps of work (a step of tiles, a wave of
//! permutations, a pass of the median), on the caller's thread only and at most every `POLL`, so
//! polling costs nothing. When the hook asks to stop, the computation returns
//! `MmdError::Interrupted`. Worker threads never see the hook: their checkpoints pass.

use crate::error::{MmdError, Result};
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// The hook is called at most this often.
const POLL: Duration = Duration::from_millis(100);

struct Hook {
    stop: Box<dyn Fn() -> bool>,
    last: Instant,
    stopped: bool,
}

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Runs `compute` on this thread with `stop` polled at its checkpoints: `stop` returns true to
/// interrupt it (e.g. when a signal arrived). The previous hook, if any, is restored afterwards.
pub fn with_interrupt<T>(stop: impl Fn() -> bool + 'static, compute: impl FnOnce() -> T) -> T {
    struct Restore(Option<Hook>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HOOK.with(|cell| *cell.borrow_mut() = self.0.take());
        }
    }
    let hook = Hook {
        stop: Box::new(stop),
        last: Instant::now(),
        stopped: false,
    };
    let _restore = Restore(HOOK.with(|cell| cell.replace(Some(hook))));
    compute()
}

/// A checkpoint: Err(Interrupted) once the hook has asked to stop.
pub fn check() -> Result<()> {
    let due = HOOK.with(|cell| match cell.borrow().as_ref() {
        None => Ok(false),
        Some(hook) if hook.stopped => Err(MmdError::Interrupted),
        Some(hook) => Ok(hook.last.elapsed() >= POLL),
    })?;
    if !due {
        return Ok(());
    }
    // The hook runs with the cell released: it may run code that computes again on this thread.
    let Some(mut hook) = HOOK.with(|cell| cell.borrow_mut().take()) else {
        return Ok(());
    };
    hook.stopped = (hook.stop)();
    hook.last = Instant::now();
    let stopped = hook.stopped;
    HOOK.with(|cell| *cell.borrow_mut() = Some(hook));
    if stopped {
        Err(MmdError::Interrupted)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn polls_at_most_every_interval_and_stops_for_good() {
        assert!(check().is_ok()); // no hook: always passes
        let calls = Rc::new(Cell::new(0));
        let seen = calls.clone();
        let result = with_interrupt(
            move || {
                seen.set(seen.get() + 1);
                seen.get() >= 2
            },
            || {
                for _ in 0..1000 {
                    check()?; // within the first interval: the hook is not called
                }
                assert_eq!(calls.get(), 0);
                std::thread::sleep(POLL);
                check()?; // first poll: go on
                std::thread::sleep(POLL);
                check() // second poll: stop
            },
        );
        assert_eq!(result, Err(MmdError::Interrupted));
        assert_eq!(calls.get(), 2);
        assert!(check().is_ok()); // the hook is gone with its computation
        let other_thread = with_interrupt(|| true, || std::thread::spawn(check).join().unwrap());
        assert!(other_thread.is_ok());
    }
}
