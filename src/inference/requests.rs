//! Model requests in flight: jobs run on a few threads of their own while the caller goes on,
//! and each result is collected by the ticket its job was given. Local models use one thread
//! (the model's run overlaps the work around it); a remote server can take several requests
//! at once, so network and server time overlap too. A pool of server requests abandons the
//! jobs running at a flush or a drop: fresh threads take the next jobs at once, and the old
//! ones end on their own when their request does (it was cancelled, or times out).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A wait that was cut short: the element is flushing or stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted: flushing or stopping")]
pub struct Interrupted;

/// Something a streaming thread may be waiting on, which a flush or a state change must be able
/// to wake without taking the lock that streaming thread holds.
pub trait Interruptible: Send + Sync {
    /// While on, every wait returns [`Interrupted`] at once; off again after the flush.
    fn set_interrupted(&self, on: bool);
}

/// Names one submitted job; its result is taken with it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

struct Slots<J, R> {
    waiting: VecDeque<(u64, J)>,
    finished: HashMap<u64, R>,
    /// Results of tickets below this are dropped: their frames were flushed.
    forget_before: u64,
    interrupted: bool,
    stop: bool,
    /// Threads of an older generation end after their job: their jobs were abandoned.
    generation: u64,
}

struct Shared<J, R> {
    slots: Mutex<Slots<J, R>>,
    changed: Condvar,
}

impl<J, R> Shared<J, R> {
    fn lock(&self) -> MutexGuard<'_, Slots<J, R>> {
        // A job that panicked has been reported by the panic hook; its slots are still whole.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<J: Send, R: Send> Interruptible for Shared<J, R> {
    fn set_interrupted(&self, on: bool) {
        self.lock().interrupted = on;
        self.changed.notify_all();
    }
}

/// Runs jobs on `threads` threads in submission order; results are taken by ticket. Dropping
/// the pool drops the jobs still waiting and returns once the running ones end.
pub struct RequestPool<J: Send + 'static, R: Send + 'static> {
    shared: Arc<Shared<J, R>>,
    /// The threads to join when dropped: none for a pool that abandons its running jobs.
    threads: Vec<JoinHandle<()>>,
    thread_count: usize,
    name: String,
    run: Arc<dyn Fn(J) -> R + Send + Sync>,
    abandon_running: bool,
    next_ticket: u64,
}

impl<J: Send + 'static, R: Send + 'static> std::fmt::Debug for RequestPool<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestPool")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<J: Send + 'static, R: Send + 'static> RequestPool<J, R> {
    /// Starts `threads` threads (at least one) named `name` that run `run` on each job.
    pub fn new(
        name: &str,
        threads: usize,
        run: impl Fn(J) -> R + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots {
                waiting: VecDeque::new(),
                finished: HashMap::new(),
                forget_before: 0,
                interrupted: false,
                stop: false,
                generation: 0,
            }),
            changed: Condvar::new(),
        });
        let mut pool = Self {
            shared,
            threads: Vec::new(),
            thread_count: threads.max(1),
            name: name.to_string(),
            run: Arc::new(run),
            abandon_running: false,
            next_ticket: 0,
        };
        pool.threads = pool.spawn_generation(0)?;
        Ok(pool)
    }

    /// The same pool, abandoning the jobs running when it forgets its tickets or is dropped
    /// rather than waiting for them (server requests, which a flush cancels).
    pub fn abandoning_running_jobs(mut self) -> Self {
        self.abandon_running = true;
        self
    }

    fn spawn_generation(&self, generation: u64) -> std::io::Result<Vec<JoinHandle<()>>> {
        (0..self.thread_count)
            .map(|index| {
                let (shared, run) = (self.shared.clone(), self.run.clone());
                std::thread::Builder::new()
                    .name(format!("{}-{index}", self.name))
                    .spawn(move || work(&shared, &*run, generation))
            })
            .collect()
    }

    /// How many jobs may run at once.
    pub fn threads(&self) -> usize {
        self.thread_count
    }

    /// Queues `job`; a free thread starts it at once.
    pub fn submit(&mut self, job: J) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.shared.lock().waiting.push_back((ticket, job));
        self.shared.changed.notify_all();
        Ticket(ticket)
    }

    /// The result of `ticket` if its job has ended.
    pub fn take(&self, ticket: Ticket) -> Option<R> {
        self.shared.lock().finished.remove(&ticket.0)
    }

    /// Waits for the result of `ticket`, unless interrupted.
    pub fn wait(&self, ticket: Ticket) -> Result<R, Interrupted> {
        let mut slots = self.shared.lock();
        loop {
            if slots.interrupted {
                return Err(Interrupted);
            }
            if let Some(result) = slots.finished.remove(&ticket.0) {
                return Ok(result);
            }
            slots = self
                .shared
                .changed
                .wait(slots)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Forgets every ticket given so far: waiting jobs are dropped, running ones end unread
    /// (in an abandoning pool, on threads of their own while fresh ones take the next jobs).
    pub fn forget_all(&mut self) {
        let mut slots = self.shared.lock();
        slots.forget_before = self.next_ticket;
        slots.waiting.clear();
        slots.finished.clear();
        if self.abandon_running {
            // Spawned under the lock, so none of them looks before the generation is set; were
            // a spawn to fail, the new threads end and the old ones go on serving.
            let next = slots.generation + 1;
            if self.spawn_generation(next).is_ok() {
                slots.generation = next;
            }
            drop(slots);
            self.shared.changed.notify_all();
        }
    }

    /// A handle that wakes (and keeps from waiting) whoever waits on this pool.
    pub fn interrupter(&self) -> Arc<dyn Interruptible> {
        self.shared.clone()
    }
}

impl<J: Send + 'static, R: Send + 'static> Drop for RequestPool<J, R> {
    fn drop(&mut self) {
        {
            let mut slots = self.shared.lock();
            slots.stop = true;
            slots.waiting.clear();
        }
        self.shared.changed.notify_all();
        if self.abandon_running {
            // Each thread ends after its job, which its element's stop cancelled.
            return;
        }
        for thread in self.threads.drain(..) {
            // A panic in a job has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

fn work<J, R>(shared: &Shared<J, R>, run: &(dyn Fn(J) -> R + Send + Sync), generation: u64) {
    loop {
        let (ticket, job) = {
            let mut slots = shared.lock();
            loop {
                if slots.stop || slots.generation != generation {
                    return;
                }
                if let Some(next) = slots.waiting.pop_front() {
                    break next;
                }
                slots = shared
                    .changed
                    .wait(slots)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = run(job);
        let mut slots = shared.lock();
        if ticket >= slots.forget_before {
            slots.finished.insert(ticket, result);
        }
        drop(slots);
        shared.changed.notify_all();
    }
}

/// The waits of one element that a flush or a stop must be able to wake, registered as the
/// threads they wait on start. A wait registered during a flush starts woken.
#[derive(Default)]
pub struct Interrupters {
    /// Whether a flush is under way, and every wait registered.
    registered: Mutex<(bool, Vec<Arc<dyn Interruptible>>)>,
}

impl Interrupters {
    pub fn register(&self, interrupter: Arc<dyn Interruptible>) {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        interrupter.set_interrupted(registered.0);
        registered.1.push(interrupter);
    }

    /// Wakes every wait (and keeps them from waiting) while `flushing`.
    pub fn set_flushing(&self, flushing: bool) {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        registered.0 = flushing;
        for interrupter in &registered.1 {
            interrupter.set_interrupted(flushing);
        }
    }

    /// Wakes every wait for good and forgets it (the element stops); a wait registered
    /// afterwards (the next start) is not woken.
    pub fn stop_all(&self) {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        for interrupter in registered.1.drain(..) {
            interrupter.set_interrupted(true);
        }
        registered.0 = false;
    }

    /// Forgets every wait (the threads stopped).
    pub fn clear(&self) {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn results_come_back_by_ticket_whatever_order_they_finish_in() {
        // Slower for smaller jobs: the first submitted finishes last.
        let mut pool = RequestPool::new("test", 3, |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            ms * 10
        })
        .unwrap();
        let tickets: Vec<_> = [60, 30, 1].into_iter().map(|ms| pool.submit(ms)).collect();
        assert_eq!(pool.wait(tickets[2]), Ok(10));
        assert_eq!(pool.wait(tickets[0]), Ok(600));
        assert_eq!(pool.wait(tickets[1]), Ok(300));
        assert_eq!(pool.take(tickets[1]), None, "a result is taken once");
    }

    #[test]
    fn no_more_jobs_run_at_once_than_threads() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let mut pool = RequestPool::new("test", 2, move |job: u32| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            r.fetch_sub(1, Ordering::SeqCst);
            job
        })
        .unwrap();
        let tickets: Vec<_> = (0..6).map(|job| pool.submit(job)).collect();
        for (job, ticket) in tickets.into_iter().enumerate() {
            assert_eq!(pool.wait(ticket), Ok(job as u32));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_interrupted_wait_returns_at_once_and_forgotten_results_are_dropped() {
        let mut pool = RequestPool::new("test", 1, |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        })
        .unwrap();
        let slow = pool.submit(3000);
        let interrupter = pool.interrupter();
        let started = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                interrupter.set_interrupted(true);
            });
            assert_eq!(pool.wait(slow), Err(Interrupted));
        });
        assert!(started.elapsed() < Duration::from_millis(1500));
        pool.forget_all();
        interrupter.set_interrupted(false);
        let next = pool.submit(1);
        assert_eq!(pool.wait(next), Ok(1));
        assert_eq!(pool.take(slow), None, "the flushed job's result is gone");
    }

    #[test]
    fn dropping_the_pool_returns_after_the_running_job() {
        let mut pool = RequestPool::new("test", 1, |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
        })
        .unwrap();
        // The running job (0.5 s) is waited for, the four queued ones (2 s more) are not.
        for _ in 0..5 {
            pool.submit(500);
        }
        let started = Instant::now();
        drop(pool);
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn an_abandoning_pool_starts_new_jobs_at_once_after_a_flush_and_drops_at_once() {
        // Job 0 stands for a server that never answers: it waits until the gate opens, which
        // happens only once the test is over.
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let job_gate = gate.clone();
        let (started_tx, started) = std::sync::mpsc::channel();
        let started_tx = Mutex::new(started_tx);
        let mut pool = RequestPool::new("test", 1, move |job: u64| {
            if job == 0 {
                started_tx.lock().unwrap().send(()).unwrap();
                let (open, changed) = &*job_gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = changed.wait(open).unwrap();
                }
            }
            job
        })
        .unwrap()
        .abandoning_running_jobs();
        let stuck = pool.submit(0);
        started.recv().unwrap();
        pool.forget_all();
        let next = pool.submit(7);
        assert_eq!(
            pool.wait(next),
            Ok(7),
            "a new job does not wait behind the stuck one"
        );
        assert_eq!(pool.take(stuck), None);
        pool.submit(0);
        started.recv().unwrap();
        let (dropped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(pool);
            dropped.send(()).unwrap();
        });
        assert!(
            done.recv_timeout(Duration::from_secs(30)).is_ok(),
            "dropping the pool waited for a job that never ends"
        );
        let (open, changed) = &*gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    #[test]
    fn interrupters_wake_every_wait_and_one_registered_while_flushing() {
        use std::sync::atomic::{AtomicBool, Ordering};
        struct Flag(AtomicBool);
        impl Interruptible for Flag {
            fn set_interrupted(&self, on: bool) {
                self.0.store(on, Ordering::SeqCst);
            }
        }
        let interrupters = Interrupters::default();
        let first = Arc::new(Flag(AtomicBool::new(false)));
        interrupters.register(first.clone());
        interrupters.set_flushing(true);
        assert!(first.0.load(Ordering::SeqCst));
        let late = Arc::new(Flag(AtomicBool::new(false)));
        interrupters.register(late.clone());
        assert!(late.0.load(Ordering::SeqCst), "starts woken during a flush");
        interrupters.set_flushing(false);
        assert!(!first.0.load(Ordering::SeqCst) && !late.0.load(Ordering::SeqCst));
        interrupters.clear();
        interrupters.set_flushing(true);
        assert!(!first.0.load(Ordering::SeqCst), "forgotten after clear");
    }
}
