//! A small persistent thread pool for the kernels.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

// Threading: a small persistent pool. The caller publishes a job (a borrowed closure) under a
// new generation; workers join it by CAS on `state` while it is open, then claim chunks from a
// shared counter. The caller does chunks too, then waits until no worker is inside the job and
// closes it with a CAS (only possible while the active count is 0), so no worker can touch the
// borrowed closure after `run_parallel` returns. Workers that wake late find the job closed.

pub(super) static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of threads used by `matmul` (including the calling thread).
pub(crate) fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Threads used by `matmul`: set_threads, else env WICK_THREADS, else available_parallelism.
pub fn threads() -> usize {
    let t = THREADS.load(Ordering::Relaxed);
    if t != 0 {
        return t;
    }
    let t = std::env::var("WICK_THREADS").ok().and_then(|s| s.parse::<usize>().ok()).filter(|&t| t > 0);
    let t = t.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let _ = THREADS.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
    THREADS.load(Ordering::Relaxed)
}

pub(super) const CLOSED: u64 = 1 << 31;
pub(super) const GEN_SHIFT: u32 = 32;
pub(super) const SPIN_NS: u128 = 80_000; // idle workers spin this long before blocking
pub(super) const YIELD_NS: u128 = 20_000; // ... yielding between checks after this

pub(super) type Job = dyn Fn() + Sync;

pub(super) struct Pool {
    state: AtomicU64,            // gen << 32 | closed bit | active count
    want: AtomicUsize,           // workers with id < want may join the current job
    job: UnsafeCell<*const Job>, // written only while closed (no joined worker), by the lock holder
    sleepers: AtomicUsize,
    mutex: Mutex<()>,
    cv: Condvar,
    call: Mutex<usize>, // serializes callers; holds the number of spawned workers
}
// SAFETY: `job` is written only by the holder of `call` while the job is closed and no worker is
// active; workers read it only after joining (CAS Acquire on state, which follows the Release store
// that opened the job). All other fields are Sync.
unsafe impl Sync for Pool {}
// SAFETY: as above; the raw job pointer is just data guarded by the protocol.
unsafe impl Send for Pool {}

pub(super) fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: AtomicU64::new(CLOSED),
        want: AtomicUsize::new(0),
        job: UnsafeCell::new(std::ptr::null::<fn()>() as *const Job),
        sleepers: AtomicUsize::new(0),
        mutex: Mutex::new(()),
        cv: Condvar::new(),
        call: Mutex::new(0),
    })
}

pub(super) fn worker(id: usize, mut last_gen: u64) {
    let p = pool();
    loop {
        // Wait for a new generation: spin briefly, then block.
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        let mut s = p.state.load(Ordering::Acquire);
        while s >> GEN_SHIFT == last_gen {
            std::hint::spin_loop();
            spins += 1;
            if !spins.is_multiple_of(64) {
                continue;
            }
            let el = start.elapsed().as_nanos();
            if el > YIELD_NS {
                std::thread::yield_now(); // let others run if this core is shared
            }
            if el > SPIN_NS {
                let mut guard = p.mutex.lock().unwrap();
                p.sleepers.fetch_add(1, Ordering::SeqCst);
                while p.state.load(Ordering::SeqCst) >> GEN_SHIFT == last_gen {
                    guard = p.cv.wait(guard).unwrap();
                }
                p.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
            }
            s = p.state.load(Ordering::Acquire);
        }
        last_gen = s >> GEN_SHIFT;
        if id >= p.want.load(Ordering::Relaxed) {
            continue;
        }
        // Join if still open and of this generation.
        while s & CLOSED == 0 && s >> GEN_SHIFT == last_gen {
            match p.state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    // Leave the job even if it panics (the caller waits for active == 0).
                    struct Leave(&'static Pool);
                    impl Drop for Leave {
                        fn drop(&mut self) {
                            self.0.state.fetch_sub(1, Ordering::Release);
                        }
                    }
                    let _leave = Leave(p);
                    // SAFETY: we are counted active, so the caller cannot close the job nor
                    // return; the closure and everything it borrows are alive.
                    unsafe { (**p.job.get())() };
                    break;
                }
                Err(cur) => s = cur,
            }
        }
    }
}

/// Runs `f(c)` for every c in 0..nchunks on up to `nthreads` threads (caller included).
pub(super) fn run_parallel(nchunks: usize, nthreads: usize, f: &(dyn Fn(usize) + Sync)) {
    let next = AtomicUsize::new(0);
    let job = || loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= nchunks {
            break;
        }
        f(c);
    };
    if nthreads <= 1 || nchunks <= 1 {
        return job();
    }
    let p = pool();
    let mut spawned = match p.call.try_lock() {
        Ok(g) => g,
        // poisoned only by a panic in an earlier job; the protocol state is still consistent
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return job(), // pool busy: run inline
    };
    let gen = p.state.load(Ordering::Relaxed) >> GEN_SHIFT;
    while *spawned < nthreads - 1 {
        let id = *spawned;
        std::thread::Builder::new()
            .name(format!("q8-worker-{id}"))
            .spawn(move || worker(id, gen))
            .expect("spawn q8 worker");
        *spawned += 1;
    }
    let job_ref: *const (dyn Fn() + Sync + '_) = &job;
    // SAFETY: the job is closed and no worker is active (we hold `call`, and the previous caller
    // closed it with active == 0), so nobody reads `job` now. The lifetime is erased; the pointer
    // is only dereferenced by workers that joined, and we wait for them below before returning.
    unsafe { *p.job.get() = std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const Job>(job_ref) };
    p.want.store(nthreads - 1, Ordering::Relaxed);
    p.state.store(((gen + 1) & 0xffff_ffff) << GEN_SHIFT, Ordering::SeqCst);
    if p.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = p.mutex.lock().unwrap();
        p.cv.notify_all();
    }
    // Close in a guard, so that even if `job` unwinds we do not return (and free the closure)
    // while a worker is inside it.
    struct Close(&'static Pool);
    impl Drop for Close {
        fn drop(&mut self) {
            let p = self.0;
            let mut spins = 0u32;
            let mut start = None;
            loop {
                let s = p.state.load(Ordering::Acquire);
                if s & (CLOSED - 1) == 0
                    && p.state.compare_exchange(s, s | CLOSED, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    break;
                }
                spins += 1;
                std::hint::spin_loop();
                if spins.is_multiple_of(64)
                    && start.get_or_insert_with(std::time::Instant::now).elapsed().as_nanos() > YIELD_NS
                {
                    std::thread::yield_now(); // a worker was preempted: give it our core if shared
                }
            }
        }
    }
    let close = Close(p);
    job();
    drop(close);
    drop(spawned);
}
