//! Places in the connections' share of the memory budget, for every listener of both
//! protocols: [`CONNECTION_COST`] per connection from accept to close.
//!
//! A connection whose client has not proved anything yet (no accepted MQTT CONNECT; a
//! NATS client that has not authenticated, or sent its first operation where no
//! authentication is required) is *waiting*. Waiting connections hold at most half of the
//! share. When that half is full, a new connection takes the place of the waiting one
//! accepted longest ago, which is shut down: a flood of connections that never send
//! CONNECT cannot keep devices out, each newcomer outlives as many newer flood
//! connections as the half holds (128 at 32 MiB), and admitted clients always have the
//! other half. Only when the whole share is taken is a newcomer refused.
//!
//! The eviction shuts the socket down through a duplicate of its descriptor (owned here,
//! so the number cannot be reused under us); the connection's task then reads end of file
//! and ends. Its place was handed over at once, so the share is never exceeded by more
//! than the evicted connections still on their way out.

use crate::budget::{CONNECTION_COST, MemoryPool};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One waiting connection: its place, and how to shut it down.
struct Waiting {
    id: u64,
    socket: socket2::Socket,
    place: Arc<Place>,
}

/// Whether a charge still holds its place (false once handed to a newcomer).
#[derive(Debug)]
struct Place {
    held: AtomicBool,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
}

/// The connections' share and its waiting connections, oldest first.
pub struct Admission {
    pool: Arc<MemoryPool>,
    queue: Mutex<Queue>,
    next_id: AtomicU64,
}

/// Why a connection got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPlace {
    /// The whole share is taken by admitted clients (and waiting ones, when none can go).
    Full,
    /// A duplicate of the socket could not be made (out of descriptors).
    NoDescriptor,
}

/// What a new connection got.
#[derive(Debug)]
pub struct Admitted {
    pub charge: ConnectionCharge,
    /// A waiting connection was shut down to make room.
    pub evicted: bool,
}

impl Admission {
    /// The pool's offline part is the waiting connections' half.
    pub fn new(pool: Arc<MemoryPool>) -> Arc<Admission> {
        Arc::new(Admission {
            pool,
            queue: Mutex::new(Queue::default()),
            next_id: AtomicU64::new(1),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection just accepted on `socket`, waiting until admitted.
    pub fn enter(self: &Arc<Self>, socket: &tokio::net::TcpStream) -> Result<Admitted, NoPlace> {
        let dup = socket2::SockRef::from(socket)
            .try_clone()
            .map_err(|_| NoPlace::NoDescriptor)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let place = Arc::new(Place {
            held: AtomicBool::new(true),
        });
        let mut queue = self.queue();
        let evicted = if self.pool.reserve_offline(CONNECTION_COST) {
            false
        } else {
            // The waiting half is full, or the whole share: the oldest waiting connection
            // hands its place over (none waiting: the share is admitted clients' only).
            let Some(oldest) = queue.waiting.pop_front() else {
                return Err(NoPlace::Full);
            };
            oldest.place.held.store(false, Ordering::Release);
            let _ = oldest.socket.shutdown(std::net::Shutdown::Both);
            true
        };
        queue.waiting.push_back(Waiting {
            id,
            socket: dup,
            place: place.clone(),
        });
        Ok(Admitted {
            charge: ConnectionCharge {
                admission: self.clone(),
                id,
                place,
                admitted: false,
            },
            evicted,
        })
    }

    /// Connections open (admitted and waiting) and waiting now.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.pool.used() / CONNECTION_COST,
            self.pool.offline_used() / CONNECTION_COST,
        )
    }
}

/// One connection's place; given back when dropped.
pub struct ConnectionCharge {
    admission: Arc<Admission>,
    id: u64,
    place: Arc<Place>,
    admitted: bool,
}

impl std::fmt::Debug for ConnectionCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionCharge")
            .field("id", &self.id)
            .field("admitted", &self.admitted)
            .finish()
    }
}

impl ConnectionCharge {
    /// The client proved itself: its place leaves the waiting half and it can no longer
    /// be evicted for a newcomer.
    pub fn admit(&mut self) {
        if self.admitted {
            return;
        }
        self.admitted = true;
        let mut queue = self.admission.queue();
        // Under the lock: an eviction either took the place before (then it is gone and
        // the connection is closing anyway) or finds it no longer waiting.
        if self.place.held.load(Ordering::Acquire) {
            queue.waiting.retain(|w| w.id != self.id);
            self.admission.pool.settle_offline(CONNECTION_COST);
        }
    }
}

impl Drop for ConnectionCharge {
    fn drop(&mut self) {
        let mut queue = self.admission.queue();
        if !self.place.held.load(Ordering::Acquire) {
            return;
        }
        let pool = &self.admission.pool;
        if self.admitted {
            pool.release(CONNECTION_COST);
        } else {
            queue.waiting.retain(|w| w.id != self.id);
            pool.release_offline(CONNECTION_COST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_oldest_waiting_connection_makes_room_and_admitted_ones_never_do() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Four places, two of them for waiting connections.
        let pool = MemoryPool::with_offline_part(4 * CONNECTION_COST, 2 * CONNECTION_COST);
        let admission = Admission::new(pool.clone());
        let (_c1, s1) = pair(&listener).await;
        let (_c2, s2) = pair(&listener).await;
        let mut a = admission.enter(&s1).unwrap();
        let b = admission.enter(&s2).unwrap();
        assert!(!a.evicted && !b.evicted);
        a.charge.admit();
        let (_c3, s3) = pair(&listener).await;
        let c = admission.enter(&s3).unwrap();
        assert!(!c.evicted, "a's place left the waiting half");
        assert_eq!(admission.counts(), (3, 2));

        // The waiting half is full: b, the oldest waiting, is shut down for d.
        let (_c4, s4) = pair(&listener).await;
        let d = admission.enter(&s4).unwrap();
        assert!(d.evicted);
        let mut s2 = s2;
        let mut buf = [0u8; 1];
        assert_eq!(s2.read(&mut buf).await.unwrap(), 0, "b reads end of file");
        drop(b);
        assert_eq!(admission.counts(), (3, 2), "b's place went to d");

        // c admitted, d admitted, one more admitted: the whole share is taken by
        // admitted clients and a newcomer is refused.
        let (mut c, mut d) = (c, d);
        c.charge.admit();
        d.charge.admit();
        let (_c5, s5) = pair(&listener).await;
        let mut e = admission.enter(&s5).unwrap();
        e.charge.admit();
        assert_eq!(admission.counts(), (4, 0));
        let (_c6, s6) = pair(&listener).await;
        assert_eq!(admission.enter(&s6).err(), Some(NoPlace::Full));
        drop((a, c, d, e));
        assert_eq!((pool.used(), pool.offline_used()), (0, 0));
    }
}
