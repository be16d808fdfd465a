//! A round-robin TCP load balancer for the several-instances tests (issue 14), as HAProxy in
//! `mode tcp` with `option redispatch` would run in front of `viewport-server` instances:
//! each new client connection goes to the next backend, skipping one that is marked down
//! (a failed health check) or that refuses the connection (a dead process), so a client that
//! reconnects lands on a live instance. It logs each connection's backend and request line,
//! so a test can tell which instance holds the relay WebSocket.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One backend's flags.
#[derive(Default)]
struct Backend {
    port: u16,
    /// Out of rotation: new connections go elsewhere.
    down: AtomicBool,
    /// Its existing connections forward nothing, either way, and never close (a host that
    /// vanished without a reset).
    blackholed: AtomicBool,
}

/// A connection the balancer passed on.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Index of the backend it went to.
    pub backend: usize,
    /// Every HTTP request line the client sent on it (keep-alive carries several).
    pub requests: Vec<String>,
    pub open: bool,
}

impl Conn {
    /// The first request line (`GET /ws HTTP/1.1` for the relay), or "" before any.
    pub fn request(&self) -> &str {
        self.requests.first().map_or("", String::as_str)
    }
}

/// The HTTP request lines (`METHOD /path HTTP/1.1`) in a chunk a client sent.
fn request_lines(chunk: &[u8]) -> Vec<String> {
    const METHODS: [&str; 6] = ["GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS "];
    String::from_utf8_lossy(chunk)
        .lines()
        .filter(|l| l.ends_with(" HTTP/1.1") && METHODS.iter().any(|m| l.starts_with(m)))
        .map(str::to_string)
        .collect()
}

pub struct Balancer {
    pub port: u16,
    backends: Arc<Vec<Backend>>,
    log: Arc<Mutex<Vec<Conn>>>,
    /// Each connection's client side, by backend, for [`Balancer::cut`].
    clients: Arc<Mutex<Vec<(usize, TcpStream)>>>,
}

impl Balancer {
    /// Balances over the loopback ports `backends`, which need not be listening yet.
    pub fn start(backends: &[u16]) -> Balancer {
        Self::start_on(0, backends)
    }

    /// The same, listening on `port` (0: any free one).
    pub fn start_on(port: u16, backends: &[u16]) -> Balancer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let backends: Arc<Vec<Backend>> = Arc::new(backends.iter().map(|&port| Backend { port, ..Default::default() }).collect());
        let log: Arc<Mutex<Vec<Conn>>> = Default::default();
        let clients: Arc<Mutex<Vec<(usize, TcpStream)>>> = Default::default();
        let (bs, lg, cl) = (backends.clone(), log.clone(), clients.clone());
        std::thread::spawn(move || {
            let next = AtomicUsize::new(0);
            for client in listener.incoming().flatten() {
                let start = next.fetch_add(1, Ordering::SeqCst);
                // Round robin from `start`, redispatching past backends that are down or dead.
                let picked = (0..bs.len()).map(|k| (start + k) % bs.len()).filter(|&i| !bs[i].down.load(Ordering::SeqCst)).find_map(|i| {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], bs[i].port));
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok().map(|up| (i, up))
                });
                let Some((i, upstream)) = picked else {
                    drop(client);
                    continue;
                };
                if let Ok(c) = client.try_clone() {
                    cl.lock().unwrap().push((i, c));
                }
                let id = {
                    let mut l = lg.lock().unwrap();
                    l.push(Conn { backend: i, requests: Vec::new(), open: true });
                    l.len() - 1
                };
                let open = Arc::new(AtomicUsize::new(2));
                for (up, mut from, mut to) in [(true, client.try_clone().unwrap(), upstream.try_clone().unwrap()), (false, upstream, client)] {
                    let (bs, lg, open) = (bs.clone(), lg.clone(), open.clone());
                    std::thread::spawn(move || {
                        let held = || bs[i].blackholed.load(Ordering::SeqCst);
                        super::forward(&mut from, &mut to, held, |chunk| {
                            if up {
                                lg.lock().unwrap()[id].requests.extend(request_lines(chunk));
                            }
                        });
                        // A vanished host never closes either.
                        while held() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        if open.fetch_sub(1, Ordering::SeqCst) == 1 {
                            lg.lock().unwrap()[id].open = false;
                        }
                    });
                }
            }
        });
        Balancer { port, backends, log, clients }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every connection so far, oldest first.
    pub fn connections(&self) -> Vec<Conn> {
        self.log.lock().unwrap().clone()
    }

    /// The backend holding the newest open relay WebSocket (`GET /ws…`), if one is open.
    pub fn relay_backend(&self) -> Option<usize> {
        self.connections().iter().rev().find(|c| c.open && c.request().starts_with("GET /ws")).map(|c| c.backend)
    }

    /// Takes backend `i` out of rotation (as a failed health check does) or puts it back.
    pub fn set_down(&self, i: usize, down: bool) {
        self.backends[i].down.store(down, Ordering::SeqCst);
    }

    /// Closes every client connection to backend `i` (as a proxy draining it would).
    pub fn cut(&self, i: usize) {
        for (_, c) in self.clients.lock().unwrap().iter().filter(|(b, _)| *b == i) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Backend `i`'s host vanishes: out of rotation, and its open connections go silent
    /// without a reset or a close.
    pub fn vanish(&self, i: usize) {
        self.set_down(i, true);
        self.backends[i].blackholed.store(true, Ordering::SeqCst);
    }
}
