//! A TCP proxy on 127.0.0.1 in front of a real server, which a test can turn into the server
//! that stops answering: `freeze_open_connections` keeps every connection open now from passing
//! another byte of the server's answers (the requests still reach the server), while new
//! connections pass as before; `cut_answers` drops every connection in the middle of its next
//! answer; `answers_together` lets answers through only when several connections have one, as
//! a server that answers a batch at once does. Each connection is two copying threads.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One connection: whether its answers stop, and the bytes that went each way since.
struct Connection {
    frozen: AtomicBool,
    /// Request bytes passed: an answer that follows new ones is a new answer.
    sent: AtomicU64,
    sent_while_frozen: AtomicU64,
    swallowed: AtomicU64,
}

pub struct TcpProxy {
    /// `127.0.0.1:PORT` to give the element instead of the server's address.
    pub address: String,
    connections: Arc<Mutex<Vec<Arc<Connection>>>>,
    faults: Arc<Faults>,
    /// Connections the client opened so far.
    opened: Arc<AtomicUsize>,
}

/// What the proxy does to every connection's answers.
#[derive(Default)]
struct Faults {
    /// Set: the next answer of every connection is cut in its middle, and the connection
    /// closed.
    cut: AtomicBool,
    /// Some: answers wait for each other (see [`TcpProxy::answers_together`]).
    together: Mutex<Option<Together>>,
    released: Condvar,
}

struct Together {
    connections: usize,
    waiting: usize,
    /// Counts releases, so that a waiting answer knows its group went.
    round: u64,
}

impl Faults {
    /// Holds a connection's answer bytes until `connections` connections have some, or a
    /// second went by (the last frames of a stream have fewer answers to wait for).
    fn wait_for_the_others(&self) {
        let mut together = self.together.lock().unwrap();
        let Some(group) = together.as_mut() else {
            return;
        };
        group.waiting += 1;
        if group.waiting >= group.connections {
            group.waiting = 0;
            group.round += 1;
            self.released.notify_all();
            return;
        }
        let round = group.round;
        let (mut together, timeout) = self
            .released
            .wait_timeout_while(together, Duration::from_secs(1), |t| {
                t.as_ref().is_some_and(|group| group.round == round)
            })
            .unwrap();
        if timeout.timed_out()
            && let Some(group) = together.as_mut()
        {
            group.waiting = group.waiting.saturating_sub(1);
        }
    }
}

impl TcpProxy {
    /// Starts forwarding to `server` (`host:port`).
    pub fn start(server: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().unwrap().to_string();
        let connections: Arc<Mutex<Vec<Arc<Connection>>>> = Arc::default();
        let faults = Arc::new(Faults::default());
        let opened = Arc::new(AtomicUsize::new(0));
        let (server, all, every_fault, count) = (
            server.to_string(),
            connections.clone(),
            faults.clone(),
            opened.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(&server) else {
                    continue;
                };
                let connection = Arc::new(Connection {
                    frozen: AtomicBool::new(false),
                    sent: AtomicU64::new(0),
                    sent_while_frozen: AtomicU64::new(0),
                    swallowed: AtomicU64::new(0),
                });
                all.lock().unwrap().push(connection.clone());
                forward(client, upstream, connection, every_fault.clone());
            }
        });
        TcpProxy {
            address,
            connections,
            faults,
            opened,
        }
    }

    /// From now on an answer passes only when `connections` connections have one waiting (or
    /// after a second): the answers of that many requests in flight reach the client together.
    pub fn answers_together(&self, connections: usize) {
        *self.faults.together.lock().unwrap() = Some(Together {
            connections,
            waiting: 0,
            round: 0,
        });
    }

    /// How many connections the client opened through the proxy so far.
    pub fn connections_opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }

    /// From now on every connection's next answer is cut in its middle and the connection
    /// closed, as a proxy that drops connections does.
    pub fn cut_answers(&self) {
        self.faults.cut.store(true, Ordering::SeqCst);
    }

    /// Every connection open now passes no more answers; later ones pass as before.
    pub fn freeze_open_connections(&self) {
        for connection in self.connections.lock().unwrap().iter() {
            connection.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Waits (up to `limit`) until a request went out on a frozen connection, or an answer the
    /// client waits for was swallowed: from then on, the client waits for an answer that will
    /// not come. False if neither happened.
    pub fn wait_for_a_held_request(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.connections.lock().unwrap().iter().any(|c| {
                c.sent_while_frozen.load(Ordering::SeqCst) > 0
                    || c.swallowed.load(Ordering::SeqCst) > 0
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn forward(
    client: TcpStream,
    upstream: TcpStream,
    connection: Arc<Connection>,
    faults: Arc<Faults>,
) {
    let (mut client_in, mut upstream_out) =
        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let requests = connection.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        while let Ok(read) = client_in.read(&mut buffer) {
            if read == 0 || upstream_out.write_all(&buffer[..read]).is_err() {
                break;
            }
            requests.sent.fetch_add(read as u64, Ordering::SeqCst);
            if requests.frozen.load(Ordering::SeqCst) {
                requests
                    .sent_while_frozen
                    .fetch_add(read as u64, Ordering::SeqCst);
            }
        }
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        let mut answered = 0;
        while let Ok(read) = upstream_in.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let sent = connection.sent.load(Ordering::SeqCst);
            if sent != answered {
                answered = sent;
                faults.wait_for_the_others();
            }
            if connection.frozen.load(Ordering::SeqCst) {
                // Swallowed: the client never sees this answer, nor any after it.
                connection
                    .swallowed
                    .fetch_add(read as u64, Ordering::SeqCst);
                continue;
            }
            if faults.cut.load(Ordering::SeqCst) {
                let _ = client_out.write_all(&buffer[..read / 2]);
                let _ = client_out.shutdown(Shutdown::Both);
                let _ = upstream_in.shutdown(Shutdown::Both);
                return;
            }
            if client_out.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Write);
    });
}
