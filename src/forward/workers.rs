//! The forwarding threads: with `runtime.worker_threads = N` above 1, the upstream links
//! run on N − 1 threads of their own, each a current-thread runtime, instead of on the
//! event loop. A link's work (store reads, matching, packing and lz4, TLS, the upstream's
//! socket) then no longer takes turns with the connections, whose packets the event
//! loop keeps handling in arrival order (`main.rs`, `tests/arrival_order.rs`): that order
//! is why the broker side stays on one thread.
//!
//! Nothing a link shares needs the event loop: the store is a handle to the writer
//! thread, the committed-seq watch and the cursor board are thread-safe, metrics are
//! atomics. An upstream keeps its thread for the process's life (`upstream index % (N −
//! 1)`), and a reload that restarts its link starts it there again.
//!
//! The threads start with the first link, so a broker with no `[[upstream]]` has none.
//! If one cannot start (out of threads or memory), its links run on the event loop, with
//! a warning: forwarding goes on, only slower.

use std::future::Future;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Blocking threads each forwarding runtime may use for its links' store reads.
const BLOCKING_PER_THREAD: usize = 2;

pub struct Workers {
    /// Threads wanted besides the event loop.
    wanted: usize,
    started: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// `threads` as `runtime.worker_threads` resolves on this machine (at least 1).
    pub fn new(threads: usize) -> Workers {
        Workers {
            wanted: threads.saturating_sub(1),
            started: Vec::new(),
        }
    }

    /// Threads started so far besides the event loop.
    pub fn threads(&self) -> usize {
        self.started.len()
    }

    /// Runs `task` (the link of upstream number `index`) on its forwarding thread, or on
    /// the event loop when there is none.
    pub fn spawn<F>(&mut self, index: usize, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // One spawn path for both (a handle's): the link's task is compiled once.
        let handle = self.handle_for(index).unwrap_or_else(Handle::current);
        handle.spawn(task)
    }

    fn handle_for(&mut self, index: usize) -> Option<Handle> {
        if self.wanted == 0 {
            return None;
        }
        let slot = index % self.wanted;
        while self.started.len() <= slot {
            let n = self.started.len() + 1;
            match Worker::start(n) {
                Ok(w) => self.started.push(w),
                Err(e) => {
                    tracing::warn!(
                        thread = n,
                        "cannot start a forwarding thread ({e}); its upstreams run on the event loop"
                    );
                    self.wanted = self.started.len();
                    break;
                }
            }
        }
        self.started.get(slot).map(|w| w.handle.clone())
    }

    /// Ends the forwarding threads once their links have stopped (`Links::stop_all`);
    /// whatever still runs there is dropped with its runtime.
    pub fn stop(&mut self) {
        for w in &mut self.started {
            if let Some(s) = w.stop.take() {
                let _ = s.send(());
            }
        }
        for w in &mut self.started {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        self.started.clear();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Without the join: a drop may happen on the event loop, which must not block.
        for w in &mut self.started {
            if let Some(s) = w.stop.take() {
                let _ = s.send(());
            }
        }
    }
}

impl Worker {
    /// Thread `ferry-fwd-<n>`, driving its runtime until told to stop.
    fn start(n: usize) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(BLOCKING_PER_THREAD)
            .thread_name(format!("ferry-fwd-{n}-io"))
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("ferry-fwd-{n}"))
            .spawn(move || {
                // Returns on stop (or when the sender is dropped); the runtime is
                // dropped here, outside any async context, ending its tasks.
                let wait: crate::startup::Driven = Box::pin(async {
                    let _ = stopped.await;
                    std::process::ExitCode::SUCCESS
                });
                runtime.block_on(wait);
            })?;
        Ok(Worker {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[tokio::test]
    async fn one_thread_runs_links_on_the_event_loop() {
        let mut w = Workers::new(1);
        let here = thread_name();
        let there = w.spawn(0, async {
            assert!(!thread_name().starts_with("ferry-fwd"))
        });
        there.await.unwrap();
        assert_eq!(w.threads(), 0);
        assert!(!here.starts_with("ferry-fwd"));
    }

    #[tokio::test]
    async fn upstreams_keep_their_thread_and_threads_start_when_needed() {
        let mut w = Workers::new(3);
        assert_eq!(w.threads(), 0, "no thread before the first link");
        let name_of = |w: &mut Workers, i: usize| {
            let (tx, rx) = oneshot::channel();
            w.spawn(i, async move {
                let _ = tx.send(thread_name());
            });
            rx
        };
        let a = name_of(&mut w, 0).await.unwrap();
        assert_eq!(w.threads(), 1);
        let b = name_of(&mut w, 1).await.unwrap();
        let c = name_of(&mut w, 2).await.unwrap();
        let a_again = name_of(&mut w, 0).await.unwrap();
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("ferry-fwd-1", "ferry-fwd-2", "ferry-fwd-1")
        );
        assert_eq!(a_again, a);
        assert_eq!(w.threads(), 2);
        // Timers and the blocking pool work there.
        let t = w.spawn(1, async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let v = tokio::task::spawn_blocking(|| 7).await.unwrap();
            assert_eq!(v, 7);
        });
        t.await.unwrap();
        w.stop();
        assert_eq!(w.threads(), 0);
    }
}
