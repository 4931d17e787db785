//! Where the core's parallel work runs, and how to switch it off.
//!
//! Work runs on a private rayon pool whose size comes from [`set_num_threads`], else the
//! `ATACFORMER_NUM_THREADS` environment variable, else the number of cores. After `fork`
//! the pool's threads do not exist in the child, so the binding layer calls
//! [`disable_after_fork`] from a fork hook and the child runs everything on its own thread.
//! That also keeps `DataLoader` workers from oversubscribing the machine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

static FORKED: AtomicBool = AtomicBool::new(false);
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// Environment variable that sets the default number of threads.
pub const ENV_THREADS: &str = "ATACFORMER_NUM_THREADS";

/// Sets the number of threads for later calls; 0 restores the default.
pub fn set_num_threads(n: usize) {
    REQUESTED.store(n, Ordering::SeqCst);
}

/// Number of threads the next parallel call will use (1 after a fork).
pub fn num_threads() -> usize {
    if FORKED.load(Ordering::SeqCst) {
        return 1;
    }
    match REQUESTED.load(Ordering::SeqCst) {
        0 => std::env::var(ENV_THREADS)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
}

/// Called in a child process right after `fork`: from then on everything runs serially.
pub fn disable_after_fork() {
    FORKED.store(true, Ordering::SeqCst);
}

fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((n, p)) = guard.as_ref() {
        if *n == threads {
            return Some(p.clone());
        }
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("atacformer-{i}"))
            .build()
            .ok()?,
    );
    *guard = Some((threads, p.clone()));
    Some(p)
}

/// Runs `f` inside the pool when more than one thread is allowed, else on this thread.
/// Rayon iterators inside `f` use the pool; outside it they would use rayon's global pool
/// (which, after a fork, hangs), so parallel code in the core goes through [`map`], or
/// checks [`num_threads`]` > 1` and runs serial code otherwise.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let threads = num_threads();
    match (threads > 1).then(|| pool(threads)).flatten() {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Maps `f` over `items`, in parallel when allowed; results keep the input order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    if num_threads() > 1 {
        install(|| items.par_iter().map(&f).collect())
    } else {
        items.iter().map(f).collect()
    }
}
