//! The engine: owns candle and the model on its own thread and serves a queue
//! of requests, replying through oneshot channels. Knows nothing of
//! documents, editors or LSP.

pub mod cpu;
pub mod decoder;
pub(crate) mod linear;
pub mod remote;
pub mod sampling;
pub mod session;

pub(crate) use decoder::quiet_candle_workers;
pub use decoder::{Decoder, LoadOptions};
pub use sampling::Sampling;
pub use session::{EngineError, Generation, Request, Session, StopReason, MIN_ALTERNATIVE_P};
pub use session::{ModelInfo, StopWhen, TokenCounter};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// What the engine thread generates with: the local model ([`Session`]) or
/// a remote serving engine ([`remote::Remote`]). Queueing, superseding and
/// cancellation are the engine thread's and the same for both.
pub trait Generator: Send {
    fn info(&self) -> ModelInfo;
    /// Generates, looking at `interrupted` between steps (prefill chunks and
    /// tokens locally; every few milliseconds remotely).
    fn generate_with(&mut self, req: &Request, interrupted: &dyn Fn() -> bool) -> Result<Generation, EngineError>;
    /// Forgets cached state (the KV cache).
    fn reset(&mut self);
    /// Run once after loading: a health check. An error is reported through
    /// [`Engine::health`]; the generator still serves.
    fn check(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}

impl Generator for Session {
    fn info(&self) -> ModelInfo {
        Session::info(self)
    }
    fn generate_with(&mut self, req: &Request, interrupted: &dyn Fn() -> bool) -> Result<Generation, EngineError> {
        Session::generate_with(self, req, interrupted)
    }
    fn reset(&mut self) {
        Session::reset(self)
    }
}

/// The backend's health as the engine thread last saw it: a problem (the
/// kind and message of a remote failure, or of the start-up check) until a
/// request succeeds. Changes only when the kind of problem changes, so a
/// watcher shows one message per kind, not one per keystroke.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub problem: Option<remote::RemoteError>,
    /// Problems seen so far (each change of kind counts one).
    pub episodes: u64,
}

const LOADING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

/// Cancels a request when set; checked by the engine between tokens.
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cancels its request when dropped (an abandoned future stops generation).
pub(crate) struct CancelOnDrop(pub CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Wall-clock timings of a reply, measured on the engine thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueTimes {
    pub queued_ms: f64,
}

pub type Reply = Result<(Generation, QueueTimes), EngineError>;

struct Job {
    req: Request,
    /// Its arrival stamp (see [`Request::arrived`]).
    seq: u64,
    cancel: CancelToken,
    reply: oneshot::Sender<Reply>,
    enqueued: Instant,
}

struct Shared {
    /// Latest arrival stamp per key: a job whose key has a later one is
    /// answered superseded, and a running one stops at the next check
    /// (between prefill chunks or tokens).
    latest: Mutex<std::collections::HashMap<String, u64>>,
    /// Requests that are not idle, submitted and not yet started: an idle
    /// one stops as soon as this is above zero.
    waiting: AtomicUsize,
    state: AtomicU8,
    error: Mutex<Option<String>>,
    info: Mutex<Option<ModelInfo>>,
    ready: (Mutex<bool>, std::sync::Condvar),
    health: tokio::sync::watch::Sender<Health>,
    id: u64,
}

static ENGINES: AtomicU64 = AtomicU64::new(0);
static ARRIVALS: AtomicU64 = AtomicU64::new(0);

/// A stamp of the present moment, later than every earlier one (in this
/// process): the order of requests is that of their stamps.
pub fn arrival() -> u64 {
    ARRIVALS.fetch_add(1, Ordering::SeqCst) + 1
}

/// A handle to the engine thread. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts the engine thread; `load` runs on it (in the background).
    pub fn spawn<F, G>(load: F) -> Engine
    where
        F: FnOnce() -> Result<G, EngineError> + Send + 'static,
        G: Generator + 'static,
    {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            latest: Mutex::new(Default::default()),
            waiting: AtomicUsize::new(0),
            state: AtomicU8::new(LOADING),
            error: Mutex::new(None),
            info: Mutex::new(None),
            ready: (Mutex::new(false), std::sync::Condvar::new()),
            health: tokio::sync::watch::Sender::new(Health::default()),
            id: ENGINES.fetch_add(1, Ordering::Relaxed) + 1,
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("wick-engine".into())
            .spawn(move || {
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                    .unwrap_or_else(|p| Err(EngineError::Internal(panic_message(&p))));
                let session = match loaded {
                    Ok(mut s) => {
                        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.check()))
                            .unwrap_or_else(|p| Err(EngineError::Internal(panic_message(&p))));
                        note_health(&sh, &checked);
                        *sh.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.info());
                        sh.state.store(READY, Ordering::SeqCst);
                        Some(Box::new(s) as Box<dyn Generator>)
                    }
                    Err(e) => {
                        *sh.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                        sh.state.store(FAILED, Ordering::SeqCst);
                        None
                    }
                };
                {
                    let (m, cv) = &sh.ready;
                    *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    cv.notify_all();
                }
                serve(session, rx, &sh);
            })
            .expect("spawning the engine thread");
        Engine { tx, shared }
    }

    /// A remote serving engine behind the same queue; the health check runs
    /// on the engine thread while the state is "loading".
    /// `local_model` is the `model` setting (see [`remote::Remote::connect`]).
    pub fn remote(opts: remote::RemoteOptions, local_model: Option<String>) -> Engine {
        Engine::spawn(move || remote::Remote::connect(opts, local_model))
    }

    /// The backend's health; `changed()` wakes a watcher on a new problem
    /// kind or on recovery.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// Loads a model file on the engine thread.
    pub fn load(path: std::path::PathBuf, device: candle_core::Device, opts: LoadOptions) -> Engine {
        Engine::spawn(move || Session::load(&path, &device, &opts))
    }

    /// This engine's number among the engines of the process (a settings
    /// change starts a new one).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) == READY
    }

    pub(crate) fn load_error(&self) -> Option<String> {
        self.shared.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn info(&self) -> Option<ModelInfo> {
        self.shared.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Blocks until the model has loaded or failed.
    pub fn wait_ready(&self) -> Result<ModelInfo, EngineError> {
        let (m, cv) = &self.shared.ready;
        let mut done = m.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        drop(done);
        match self.info() {
            Some(i) => Ok(i),
            None => Err(EngineError::LoadFailed(self.load_error().unwrap_or_default())),
        }
    }

    /// Queues a request. Before the model is ready the reply is immediate.
    pub fn submit(&self, req: Request) -> (CancelToken, oneshot::Receiver<Reply>) {
        self.submit_with(req, CancelToken::default())
    }

    /// [`submit`](Self::submit) under the caller's token: cancelling it
    /// stops this request (and any other submitted with it).
    pub fn submit_with(&self, req: Request, cancel: CancelToken) -> (CancelToken, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        match self.shared.state.load(Ordering::SeqCst) {
            LOADING => {
                let _ = reply.send(Err(EngineError::NotReady));
            }
            FAILED => {
                let _ = reply.send(Err(EngineError::LoadFailed(self.load_error().unwrap_or_default())));
            }
            _ => {
                let seq = if req.arrived > 0 { req.arrived } else { arrival() };
                if let Some(k) = &req.key {
                    let mut l = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner());
                    let n = l.entry(k.clone()).or_default();
                    *n = (*n).max(seq);
                }
                let idle = req.idle;
                if !idle {
                    self.shared.waiting.fetch_add(1, Ordering::SeqCst);
                }
                let job = Job { req, seq, cancel: cancel.clone(), reply, enqueued: Instant::now() };
                if let Err(mpsc::SendError(job)) = self.tx.send(job) {
                    if !idle {
                        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
                    }
                    let _ = job.reply.send(Err(EngineError::Stopped));
                }
            }
        }
        (cancel, rx)
    }

    /// Generates; dropping the future cancels the request.
    pub async fn generate(&self, req: Request) -> Reply {
        let (cancel, rx) = self.submit(req);
        let _guard = CancelOnDrop(cancel);
        rx.await.unwrap_or(Err(EngineError::Stopped))
    }

    pub fn generate_blocking(&self, req: Request) -> Reply {
        self.generate_blocking_until(req, &CancelToken::default())
    }

    /// Generates on the caller's thread until done or `cancel` is set (the
    /// engine checks it between tokens): for work that runs off the async
    /// threads but must stop when its request is cancelled.
    pub fn generate_blocking_until(&self, req: Request, cancel: &CancelToken) -> Reply {
        let (_cancel, rx) = self.submit_with(req, cancel.clone());
        rx.blocking_recv().unwrap_or(Err(EngineError::Stopped))
    }

    /// Keys with a request counter (those with requests not yet done).
    pub(crate) fn tracked_keys(&self) -> usize {
        self.shared.latest.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn serve(mut session: Option<Box<dyn Generator>>, rx: mpsc::Receiver<Job>, sh: &Shared) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => return,
            }
        }
        queue.extend(rx.try_iter());
        // Idle work only when nothing else waits.
        let at = queue.iter().position(|j| !j.req.idle).unwrap_or(0);
        let Some(job) = queue.remove(at) else { continue };
        if !job.req.idle {
            sh.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let superseded = || match &job.req.key {
            Some(k) => sh.latest.lock().unwrap_or_else(|e| e.into_inner()).get(k).is_some_and(|&n| n > job.seq),
            None => false,
        };
        // A later request for the same key supersedes this one: answer it now.
        if superseded() {
            forget_key(sh, &job, &queue);
            let _ = job.reply.send(Err(EngineError::Superseded));
            continue;
        }
        if job.cancel.is_cancelled() || job.reply.is_closed() {
            forget_key(sh, &job, &queue);
            let _ = job.reply.send(Err(EngineError::Cancelled));
            continue;
        }
        let times = QueueTimes { queued_ms: job.enqueued.elapsed().as_secs_f64() * 1e3 };
        let others_wait = || job.req.idle && sh.waiting.load(Ordering::SeqCst) > 0;
        let interrupted = || job.cancel.is_cancelled() || job.reply.is_closed() || superseded() || others_wait();
        let result = match session.as_mut() {
            None => Err(EngineError::NotReady),
            Some(s) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.generate_with(&job.req, &interrupted)))
                {
                    Ok(r) => r,
                    Err(p) => {
                        s.reset();
                        Err(EngineError::Internal(panic_message(&p)))
                    }
                }
            }
        };
        note_health(sh, &result);
        // An answer for a request a newer one replaced is of no use.
        let result = match result {
            Ok(g) if g.stop == StopReason::Cancelled && superseded() => Err(EngineError::Superseded),
            Err(EngineError::Cancelled) if superseded() => Err(EngineError::Superseded),
            r => r,
        };
        forget_key(sh, &job, &queue);
        let _ = job.reply.send(result.map(|g| (g, times)));
    }
}

/// Records a remote failure (a new kind is a new problem) or a recovery.
fn note_health<T>(sh: &Shared, r: &Result<T, EngineError>) {
    sh.health.send_if_modified(|h| match r {
        Err(EngineError::Remote(e)) => {
            if h.problem.as_ref().map(|p| p.kind) == Some(e.kind) {
                return false;
            }
            h.problem = Some(e.clone());
            h.episodes += 1;
            true
        }
        Ok(_) => h.problem.take().is_some(),
        Err(_) => false,
    });
}

/// Drops a key's latest stamp once its last request is done, so the map
/// holds only keys with work queued (documents come and go). A request
/// stamped earlier that is submitted after that runs: its caller drops an
/// answer it no longer needs.
fn forget_key(sh: &Shared, job: &Job, queue: &VecDeque<Job>) {
    let Some(k) = &job.req.key else { return };
    let mut latest = sh.latest.lock().unwrap_or_else(|e| e.into_inner());
    if latest.get(k) == Some(&job.seq) && !queue.iter().any(|j| j.req.key.as_ref() == Some(k)) {
        latest.remove(k);
    }
}

/// The CPU threads the model uses from now on: our kernels' pool, and
/// candle's rayon pool where it has not started yet. Clamped to 1 and to
/// the threads the machine has (more only make the workers fight for cores);
/// returns the count used.
pub(crate) fn set_threads(n: usize) -> usize {
    let used = clamp_threads(n);
    if used != n {
        tracing::warn!("{n} threads asked for; this machine has {}: using {used}", machine_threads());
    }
    let n = used;
    cpu::set_threads(n);
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    n
}

fn machine_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A thread count the machine can run: at least 1, at most its threads.
pub(crate) fn clamp_threads(n: usize) -> usize {
    n.clamp(1, machine_threads())
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}
