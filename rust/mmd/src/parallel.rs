//! Parallelism: work is split into blocks of a fixed size and results are combined in block
//! order, so every result is bitwise the same whatever the number of threads.
//!
//! The thread count comes from `set_num_threads`, else the environment variable
//! `CAUSAL_REWARDS_NUM_THREADS`, else rayon's default. Parallelism can be switched off
//! (`set_parallelism(false)` or `CAUSAL_REWARDS_PARALLELISM=false`); the Python bindings switch it
//! off in a forked child, whose copy of a thread pool has no threads behind it.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// Uses `threads` worker threads from now on (0 = rayon's default).
pub fn set_num_threads(threads: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .ok()
        .map(Arc::new);
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = pool;
}

/// The number of worker threads a parallel computation uses now.
pub fn num_threads() -> usize {
    if !parallelism_enabled() {
        return 1;
    }
    pool().current_num_threads()
}

fn pool() -> Arc<rayon::ThreadPool> {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| {
            let threads = std::env::var("CAUSAL_REWARDS_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let built = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            Arc::new(built.unwrap_or_else(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("one thread")
            }))
        })
        .clone()
}

/// `f(0), f(1), ..., f(count - 1)`, in parallel when allowed, returned in index order.
pub fn map_blocks<R, F>(count: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(usize) -> R + Sync + Send,
{
    if count <= 1 || !parallelism_enabled() {
        return (0..count).map(f).collect();
    }
    pool().install(|| (0..count).into_par_iter().map(&f).collect())
}
