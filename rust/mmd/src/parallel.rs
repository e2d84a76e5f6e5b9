//! Parallelism: work is split into blocks of a fixed size and results are combined in block
//! order, so every result is bitwise the same whatever the number of threads.
//!
//! The thread count comes from `set_num_threads`, else the environment variable
//! `CAUSAL_REWARDS_NUM_THREADS`, else one per available core; it is capped at
//! `max_num_threads()` (more threads than that only wait for a core, and creating a million of
//! them hangs). Parallelism can be switched off (`set_parallelism(false)` or
//! `CAUSAL_REWARDS_PARALLELISM=false`); the Python bindings switch it off in a forked child, whose
//! copy of a thread pool has no threads behind it.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The environment variable that sets the thread count.
pub const NUM_THREADS_VARIABLE: &str = "CAUSAL_REWARDS_NUM_THREADS";
/// Threads per available core at most.
const THREADS_PER_CORE: usize = 4;

static DISABLED: AtomicBool = AtomicBool::new(false);
static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

/// Switches parallel execution on or off for the whole process.
pub fn set_parallelism(enabled: bool) {
    DISABLED.store(!enabled, Ordering::SeqCst);
}

/// Whether the next computation may use several threads.
pub fn parallelism_enabled() -> bool {
    if DISABLED.load(Ordering::SeqCst) {
        return false;
    }
    !matches!(
        std::env::var("CAUSAL_REWARDS_PARALLELISM").as_deref(),
        Ok("0" | "false" | "FALSE" | "False" | "off")
    )
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most worker threads a computation uses: 4 per available core.
pub fn max_num_threads() -> usize {
    THREADS_PER_CORE * available_cores()
}

/// The thread count a request stands for: 0 is one per available core; capped.
fn resolve(threads: usize) -> usize {
    match threads {
        0 => available_cores(),
        n => n.min(max_num_threads()),
    }
}

/// Uses `threads` worker threads from now on (0 = one per available core), at most
/// `max_num_threads()`; returns the number used.
pub fn set_num_threads(threads: usize) -> usize {
    let threads = resolve(threads);
    let pool = build(threads);
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some(pool);
    threads
}

/// What `CAUSAL_REWARDS_NUM_THREADS` asks for: (threads used, a warning when the value is not a
/// thread count or exceeds the cap). Unset or bad values mean one thread per available core.
pub fn environment_threads() -> (usize, Option<String>) {
    let Ok(text) = std::env::var(NUM_THREADS_VARIABLE) else {
        return (resolve(0), None);
    };
    match text.trim().parse::<usize>() {
        Err(_) => (
            resolve(0),
            Some(format!(
                "{NUM_THREADS_VARIABLE}={text:?} is not a thread count (a whole number >= 0): \
                 using one thread per core ({})",
                resolve(0)
            )),
        ),
        Ok(n) if n > max_num_threads() => (
            max_num_threads(),
            Some(format!(
                "{NUM_THREADS_VARIABLE}={n} exceeds the cap of {} threads ({THREADS_PER_CORE} per \
                 available core): using {}",
                max_num_threads(),
                max_num_threads()
            )),
        ),
        Ok(n) => (resolve(n), None),
    }
}

/// The number of worker threads a parallel computation uses now.
pub fn num_threads() -> usize {
    if !parallelism_enabled() {
        return 1;
    }
    pool().current_num_threads()
}

fn build(threads: usize) -> Arc<rayon::ThreadPool> {
    let built = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    Arc::new(built.unwrap_or_else(|_| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("one thread")
    }))
}

fn pool() -> Arc<rayon::ThreadPool> {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| build(environment_threads().0))
        .clone()
}

/// `f(0), f(1), ..., f(count - 1)`, in parallel when allowed, returned in index order.
pub fn map_blocks<R, F>(count: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(usize) -> R + Sync + Send,
{
    map_blocks_of(count, usize::MAX, f)
}

/// Below this much work (in units of about a nanosecond: kernel evaluations, rows) a call runs on
/// the calling thread: waking a pool thread costs tens of microseconds on a virtual machine.
pub const PARALLEL_MIN_WORK: usize = 1 << 16;

/// `map_blocks` for `work` units of work in all: on the calling thread when that is too little to
/// pay for waking the pool, or when the pool has one thread. The results are the same either way.
pub fn map_blocks_of<R, F>(count: usize, work: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(usize) -> R + Sync + Send,
{
    if count <= 1 || work < PARALLEL_MIN_WORK || !parallelism_enabled() {
        return (0..count).map(f).collect();
    }
    let pool = pool();
    if pool.current_num_threads() == 1 {
        return (0..count).map(f).collect();
    }
    pool.install(|| (0..count).into_par_iter().map(&f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_are_capped() {
        assert_eq!(resolve(0), available_cores());
        assert_eq!(resolve(1), 1);
        assert_eq!(resolve(1_000_000), max_num_threads());
        assert_eq!(resolve(usize::MAX), max_num_threads());
    }
}
