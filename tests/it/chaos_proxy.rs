//! A seeded chaos proxy: plain HTTP/1.1 on 127.0.0.1, in front of the test Synapse (also
//! loopback), that breaks a share of the requests in the ways seen in the field.
//!
//! Per request, after parsing it (request line, headers, a `Content-Length` body; a chunked
//! request is refused and noted as a proxy problem, since synbatch never sends one), it does one
//! of:
//!
//! | fault | what the client sees | did Synapse get the request? |
//! |---|---|---|
//! | `pass` | Synapse's answer | yes |
//! | `refuse-503` | 503, connection kept | no |
//! | `lost-502` | 502 (Synapse's answer is dropped), connection kept | yes, and it answered |
//! | `reset` | the connection reset (RST: `SO_LINGER` 0) with no answer | yes, and it answered |
//! | `late` | nothing: the request is held past the client's `--timeout` (or, for half of them, until Synapse has answered the client's retry), THEN forwarded | yes, after the client gave up and retried |
//! | `torn` | Synapse's real status line and headers, its real `Content-Length`, part of the body, then the connection closed | yes |
//! | `limited-429` | 429 `M_LIMIT_EXCEEDED`, `Retry-After: 1`, `retry_after_ms: 1000`, connection kept | no |
//!
//! The choice for a request comes from `fastrand::Rng::with_seed(seed ^ hash(request, n))`:
//! the request is its method, decoded path and body (less a body with a password in it, which
//! is generated anew each run), with the test's unique names and Synapse's random room ids
//! replaced by fixed text ([`Config::normalize`]), and `n` counts the same requests before it.
//! So a seed gives the same request the same fault on every run, whatever the order in which
//! concurrent requests arrive: a failure can be replayed (Synapse's own timing aside).
//!
//! Everything is bounded: a cap on the requests handled (past it every request gets a 503 and
//! [`ChaosProxy::capped`] says so), read timeouts on both sides, a size limit on heads.
//! Nothing is exempt by default (whoami and the admin check too); `exempt_first` and
//! `exempt_paths` exist for a test that must keep some requests whole.
//!
//! Each upstream request goes on a fresh connection with `Connection: close`; the answer is
//! read whole (`Content-Length`, chunked, or up to the close) and given to the client with its
//! own `Content-Length`, on the client's keep-alive connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the proxy did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    Pass,
    Refuse503,
    Lost502,
    Reset,
    Late,
    Torn,
    Limited429,
}

impl Fault {
    /// Every fault kind (not `Pass`).
    pub const ALL: [Fault; 6] = [
        Fault::Refuse503,
        Fault::Lost502,
        Fault::Reset,
        Fault::Late,
        Fault::Torn,
        Fault::Limited429,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Refuse503 => "refuse-503",
            Fault::Lost502 => "lost-502",
            Fault::Reset => "reset",
            Fault::Late => "late",
            Fault::Torn => "torn",
            Fault::Limited429 => "limited-429",
        }
    }

    /// Whether Synapse gets the request.
    pub fn forwards(self) -> bool {
        !matches!(self, Fault::Refuse503 | Fault::Limited429)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// The share of requests that get a fault (0.0 to 1.0).
    pub rate: f64,
    /// The faults to pick from, each as likely as the others.
    pub faults: Vec<Fault>,
    /// How long a `late` request is held before it is forwarded: make it longer than the
    /// client's `--timeout`.
    pub late_hold: Range<Duration>,
    /// The first N requests pass untouched.
    pub exempt_first: usize,
    /// Requests whose path contains one of these pass untouched.
    pub exempt_paths: Vec<String>,
    /// Requests handled at most; past it every request gets a 503 and `capped` is set.
    pub max_requests: usize,
    /// Replacements made in a request's path and body before it is hashed for the fault
    /// choice: a test's unique names and Synapse's random room ids, so that a seed picks the
    /// same faults for the same request on every run.
    pub normalize: Vec<(String, String)>,
    /// A whole outage instead of scattered faults: see [`Outage`].
    pub outage: Option<Outage>,
}

/// After `after` requests whose path contains `counting` have passed, every request gets a
/// 503 until one whose path contains `until` arrives: that one and all later ones pass.
#[derive(Debug, Clone)]
pub struct Outage {
    pub after: usize,
    pub counting: String,
    pub until: String,
}

impl Config {
    /// Every fault kind, at `rate`, with `late` holding past a client timeout of `timeout`.
    pub fn new(seed: u64, rate: f64, timeout: Duration) -> Config {
        Config {
            seed,
            rate,
            faults: Fault::ALL.to_vec(),
            late_hold: timeout + Duration::from_millis(300)..timeout * 2 + Duration::from_secs(1),
            exempt_first: 0,
            exempt_paths: vec![],
            max_requests: 20_000,
            normalize: vec![],
            outage: None,
        }
    }
}

/// One request and what became of it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Arrival order, from 0.
    pub seq: usize,
    /// Which client connection it came on.
    pub conn: usize,
    /// Milliseconds since the proxy started, at arrival.
    pub at_ms: u128,
    pub method: String,
    /// Percent-decoded path and query.
    pub path: String,
    /// The start of the body (a body with a password in it is not kept).
    pub body: String,
    pub fault: Fault,
    /// Synapse's status, for a forwarded request that got an answer.
    pub upstream: Option<u16>,
    /// Anything else worth knowing: how long it was held, where the body was cut.
    pub note: String,
}

impl Record {
    fn line(&self) -> String {
        let upstream = self
            .upstream
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        format!(
            "#{} conn {} +{}ms {} {} {} -> {} upstream {upstream}{}",
            self.seq,
            self.conn,
            self.at_ms,
            self.fault.name(),
            self.method,
            self.path,
            match self.fault {
                Fault::Pass => "answered",
                Fault::Refuse503 => "503",
                Fault::Lost502 => "502",
                Fault::Reset => "RST",
                Fault::Late => "held, then forwarded",
                Fault::Torn => "torn",
                Fault::Limited429 => "429",
            },
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            }
        )
    }
}

struct State {
    config: Config,
    upstream: SocketAddr,
    started: Instant,
    next_seq: AtomicUsize,
    /// For an outage: requests counted so far, and whether it is over.
    outage_counted: AtomicUsize,
    outage_over: AtomicBool,
    next_conn: AtomicUsize,
    in_flight: AtomicUsize,
    capped: AtomicBool,
    stop: AtomicBool,
    occurrences: Mutex<HashMap<String, u64>>,
    records: Mutex<Vec<Record>>,
    problems: Mutex<Vec<String>>,
    /// The requests Synapse has answered, as `(seq, last path segment, body)`, for the `late`
    /// requests that wait for the client's retry.
    answered: Mutex<Vec<(usize, String, Vec<u8>)>>,
    answered_now: Condvar,
}

/// The proxy; it stops accepting when dropped.
pub struct ChaosProxy {
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
}

const HEAD_MAX: usize = 64 * 1024;
/// How long a client connection may sit idle between requests.
const CLIENT_IDLE: Duration = Duration::from_secs(30);
/// How long Synapse may take to answer one forwarded request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

impl ChaosProxy {
    /// Starts the proxy in front of `upstream_url` (`http://127.0.0.1:PORT`).
    pub fn start(upstream_url: &str, config: Config) -> ChaosProxy {
        let authority = upstream_url
            .strip_prefix("http://")
            .expect("the chaos proxy speaks plain http to the upstream")
            .trim_end_matches('/');
        let upstream = authority
            .to_socket_addrs()
            .expect("upstream address")
            .next()
            .expect("upstream address");
        assert!(upstream.ip().is_loopback(), "the upstream must be loopback");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the chaos proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            config,
            upstream,
            started: Instant::now(),
            next_seq: AtomicUsize::new(0),
            outage_counted: AtomicUsize::new(0),
            outage_over: AtomicBool::new(false),
            next_conn: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            capped: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            occurrences: Mutex::default(),
            records: Mutex::default(),
            problems: Mutex::default(),
            answered: Mutex::default(),
            answered_now: Condvar::new(),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let conn = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                std::thread::spawn(move || serve(&shared, stream, conn));
            }
        });
        ChaosProxy {
            url: format!("http://{addr}"),
            addr,
            state,
        }
    }

    pub fn seed(&self) -> u64 {
        self.state.config.seed
    }

    pub fn records(&self) -> Vec<Record> {
        let mut records = self.state.records.lock().unwrap().clone();
        records.sort_by_key(|r| r.seq);
        records
    }

    /// What went wrong in the proxy itself (a request it could not parse, an upstream that
    /// did not answer): a test must find none, or its verdict is not about synbatch.
    pub fn problems(&self) -> Vec<String> {
        self.state.problems.lock().unwrap().clone()
    }

    /// Whether the request cap was reached (the run went on far longer than it should).
    pub fn capped(&self) -> bool {
        self.state.capped.load(Ordering::SeqCst)
    }

    /// How many requests got each fault.
    pub fn counts(&self) -> HashMap<Fault, usize> {
        let mut counts = HashMap::new();
        for r in self.state.records.lock().unwrap().iter() {
            *counts.entry(r.fault).or_default() += 1;
        }
        counts
    }

    /// `seed 7: 212 requests: pass 160, refuse-503 9, ...`.
    pub fn summary(&self) -> String {
        let counts = self.counts();
        let total: usize = counts.values().sum();
        let mut parts = vec![];
        for fault in [Fault::Pass].iter().chain(Fault::ALL.iter()) {
            parts.push(format!(
                "{} {}",
                fault.name(),
                counts.get(fault).copied().unwrap_or(0)
            ));
        }
        format!(
            "chaos seed {}: {total} requests: {}",
            self.seed(),
            parts.join(", ")
        )
    }

    /// The requests whose path or body mentions `needle`, one per line.
    pub fn trace(&self, needle: &str) -> String {
        let lines: Vec<String> = self
            .records()
            .iter()
            .filter(|r| r.path.contains(needle) || r.body.contains(needle))
            .map(Record::line)
            .collect();
        if lines.is_empty() {
            "    (no request mentions it)".into()
        } else {
            lines
                .iter()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    /// Waits until no request is held or in flight (a `late` one may still be on its way to
    /// Synapse after the client has finished); false if that takes longer than `limit`.
    pub fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.state.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// FNV-1a: a hash that is the same on every run and every platform.
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

struct Request {
    method: String,
    target: String,
    head: Vec<u8>,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Serves one client connection until it closes, is idle too long, or a fault ends it.
fn serve(state: &State, mut client: TcpStream, conn: usize) {
    let _ = client.set_read_timeout(Some(CLIENT_IDLE));
    let _ = client.set_nodelay(true);
    let mut buffer = Vec::new();
    loop {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let request = match read_request(&mut client, &mut buffer) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(why) => {
                state.problems.lock().unwrap().push(format!(
                    "conn {conn}: unreadable request: {why}; answered 400"
                ));
                let _ = write_answer(&mut client, &plain(400, "Bad Request", "bad request"));
                return;
            }
        };
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        let keep = handle(state, &mut client, conn, request);
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep {
            return;
        }
    }
}

/// Handles one request; false when the client connection is to be dropped.
fn handle(state: &State, client: &mut TcpStream, conn: usize, request: Request) -> bool {
    let seq = state.next_seq.fetch_add(1, Ordering::SeqCst);
    let path = percent_decode(&request.target);
    let config = &state.config;
    let body_text = String::from_utf8_lossy(&request.body);
    // What identifies the request for the fault choice: its method, path and body (not a body
    // with a generated password, which differs on every run), with the test's names made
    // stable, and how many such requests came before it.
    let mut identity = format!("{} {path}", request.method);
    if !body_text.contains("password") {
        identity.push(' ');
        identity.push_str(&body_text);
    }
    for (from, to) in &config.normalize {
        identity = identity.replace(from.as_str(), to);
    }
    let occurrence = {
        let mut seen = state.occurrences.lock().unwrap();
        let n = seen.entry(identity.clone()).or_default();
        *n += 1;
        *n
    };
    let mut rng =
        fastrand::Rng::with_seed(config.seed ^ fnv1a(&format!("{identity} #{occurrence}")));
    let exempt = seq < config.exempt_first || config.exempt_paths.iter().any(|p| path.contains(p));
    let down = config.outage.as_ref().is_some_and(|outage| {
        if state.outage_over.load(Ordering::SeqCst) {
            return false;
        }
        if state.outage_counted.load(Ordering::SeqCst) < outage.after {
            if path.contains(&outage.counting) {
                state.outage_counted.fetch_add(1, Ordering::SeqCst);
            }
            return false;
        }
        if path.contains(&outage.until) {
            state.outage_over.store(true, Ordering::SeqCst);
            return false;
        }
        true
    });
    let fault = if down {
        Fault::Refuse503
    } else if !exempt && !config.faults.is_empty() && rng.f64() < config.rate {
        config.faults[rng.usize(..config.faults.len())]
    } else {
        Fault::Pass
    };
    let body = if body_text.contains("password") {
        "<a body with a password>".to_string()
    } else {
        body_text.chars().take(200).collect()
    };
    let mut record = Record {
        seq,
        conn,
        at_ms: state.started.elapsed().as_millis(),
        method: request.method.clone(),
        path,
        body,
        fault,
        upstream: None,
        note: String::new(),
    };
    if seq >= config.max_requests {
        state.capped.store(true, Ordering::SeqCst);
        record.fault = Fault::Refuse503;
        record.note = format!("past the cap of {} requests", config.max_requests);
        state.records.lock().unwrap().push(record);
        return write_answer(
            client,
            &plain(503, "Service Unavailable", "chaos proxy: cap"),
        )
        .is_ok();
    }
    let keep = match fault {
        Fault::Refuse503 => write_answer(
            client,
            &plain(
                503,
                "Service Unavailable",
                "<html>503 Service Unavailable</html>",
            ),
        )
        .is_ok(),
        Fault::Limited429 => {
            let body = br#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":1000}"#;
            let answer = Answer {
                status: 429,
                reason: "Too Many Requests".into(),
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Retry-After".into(), "1".into()),
                ],
                body: body.to_vec(),
            };
            write_answer(client, &answer).is_ok()
        }
        Fault::Pass => match forward(state, &request, seq) {
            Ok(answer) => {
                record.upstream = Some(answer.status);
                write_answer(client, &answer).is_ok()
            }
            Err(why) => upstream_failed(state, client, &mut record, why),
        },
        Fault::Lost502 => match forward(state, &request, seq) {
            Ok(answer) => {
                record.upstream = Some(answer.status);
                write_answer(
                    client,
                    &plain(502, "Bad Gateway", "<html>502 Bad Gateway</html>"),
                )
                .is_ok()
            }
            Err(why) => upstream_failed(state, client, &mut record, why),
        },
        Fault::Reset => {
            match forward(state, &request, seq) {
                Ok(answer) => record.upstream = Some(answer.status),
                Err(why) => record_problem(state, &record, &why),
            }
            reset(client);
            false
        }
        Fault::Late => {
            // Half of them for a time past the client's timeout; half until the client's
            // retry has been answered (the least convenient moment to land).
            if rng.bool() {
                let hold = rng.u64(
                    config.late_hold.start.as_millis() as u64
                        ..config.late_hold.end.as_millis() as u64,
                );
                record.note = format!("held {hold} ms");
                std::thread::sleep(Duration::from_millis(hold));
            } else {
                record.note = hold_until_retried(state, &request, seq, config.late_hold.end);
            }
            match forward(state, &request, seq) {
                Ok(answer) => {
                    record.upstream = Some(answer.status);
                    // The client has given up by now; if it has not, it gets the answer.
                    let _ = write_answer(client, &answer);
                }
                Err(why) => record_problem(state, &record, &why),
            }
            let _ = client.shutdown(Shutdown::Both);
            false
        }
        Fault::Torn => {
            match forward(state, &request, seq) {
                Ok(answer) => {
                    record.upstream = Some(answer.status);
                    if answer.body.is_empty() {
                        record.note = "empty body: reset instead".into();
                        reset(client);
                    } else {
                        let cut = rng.usize(..answer.body.len());
                        record.note = format!("{} of {} body bytes", cut, answer.body.len());
                        let _ = write_head(client, &answer, answer.body.len())
                            .and_then(|()| client.write_all(&answer.body[..cut]))
                            .and_then(|()| client.flush());
                        let _ = client.shutdown(Shutdown::Both);
                    }
                }
                Err(why) => {
                    record_problem(state, &record, &why);
                    reset(client);
                }
            }
            false
        }
    };
    state.records.lock().unwrap().push(record);
    keep
}

fn record_problem(state: &State, record: &Record, why: &str) {
    state.problems.lock().unwrap().push(format!(
        "#{} {} {}: upstream failed: {why}",
        record.seq, record.method, record.path
    ));
}

fn upstream_failed(
    state: &State,
    client: &mut TcpStream,
    record: &mut Record,
    why: String,
) -> bool {
    record_problem(state, record, &why);
    record.note = format!("upstream failed: {why}");
    let _ = write_answer(
        client,
        &plain(504, "Gateway Timeout", "chaos proxy: upstream failed"),
    );
    false
}

/// Closes with RST (SO_LINGER 0) where that can be set, with FIN elsewhere.
fn reset(stream: &mut TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Linger {
            l_onoff: i32,
            l_linger: i32,
        }
        unsafe extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let linger = Linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket fd, a pointer to a live `struct linger` and its size.
        let rc = unsafe {
            setsockopt(
                stream.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                &linger,
                std::mem::size_of::<Linger>() as u32,
            )
        };
        assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream.shutdown(Shutdown::Both);
    // Dropping the caller's stream closes it: with linger 0 that is an RST.
}

fn plain(status: u16, reason: &str, body: &str) -> Answer {
    Answer {
        status,
        reason: reason.into(),
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: body.as_bytes().to_vec(),
    }
}

fn write_head(client: &mut TcpStream, answer: &Answer, length: usize) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, answer.reason);
    for (name, value) in &answer.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        ) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    client.write_all(head.as_bytes())
}

fn write_answer(client: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    write_head(client, answer, answer.body.len())?;
    client.write_all(&answer.body)?;
    client.flush()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Reads one request; `None` when the client closed (or idled out) between requests.
fn read_request(client: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<Option<Request>, String> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > HEAD_MAX {
            return Err(format!("a head longer than {HEAD_MAX} bytes"));
        }
        match client.read(&mut chunk) {
            Ok(0) if buffer.is_empty() => return Ok(None),
            Ok(0) => return Err("the connection closed inside a head".into()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(_) if buffer.is_empty() => return Ok(None),
            Err(e) => return Err(format!("reading a head: {e}")),
        }
    };
    let head_text = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut words = head_text.lines().next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Err(format!("bad request line in {head_text:?}"));
    };
    if version != "HTTP/1.1" {
        return Err(format!("{version}: only HTTP/1.1 is expected"));
    }
    if let Some(encoding) = header(&head_text, "transfer-encoding") {
        return Err(format!(
            "Transfer-Encoding: {encoding} on {method} {target}: synbatch sends no chunked requests"
        ));
    }
    let length: usize = match header(&head_text, "content-length") {
        Some(v) => v.parse().map_err(|_| format!("Content-Length {v}"))?,
        None => 0,
    };
    let (method, target) = (method.to_string(), target.to_string());
    while buffer.len() < end + 4 + length {
        match client.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "the connection closed inside the body of {method} {target}"
                ));
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the body of {method} {target}: {e}")),
        }
    }
    let head = buffer[..end].to_vec();
    let body = buffer[end + 4..end + 4 + length].to_vec();
    buffer.drain(..end + 4 + length);
    Ok(Some(Request {
        method,
        target,
        head,
        body,
    }))
}

/// Sends the request to Synapse on a fresh connection and reads the whole answer.
fn forward(state: &State, request: &Request, seq: usize) -> Result<Answer, String> {
    let mut upstream = TcpStream::connect_timeout(&state.upstream, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    upstream
        .set_read_timeout(Some(UPSTREAM_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = upstream.set_nodelay(true);
    let head = String::from_utf8_lossy(&request.head);
    let mut out = String::new();
    for (i, line) in head.lines().enumerate() {
        if i > 0 {
            let name = line.split(':').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream
        .write_all(out.as_bytes())
        .and_then(|()| upstream.write_all(&request.body))
        .map_err(|e| format!("write: {e}"))?;
    let answer = read_answer(&mut upstream, &request.method)?;
    state
        .answered
        .lock()
        .unwrap()
        .push((seq, last_segment(&request.target), request.body.clone()));
    state.answered_now.notify_all();
    Ok(answer)
}

/// The last segment of a request's path, decoded, without the query: the user or room a
/// request is about.
fn last_segment(target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    percent_decode(path.rsplit('/').next().unwrap_or_default())
}

/// Holds a `late` request until Synapse has answered a later request about the same thing (the
/// same last path segment, and the same body or none): the client's retry has then read or
/// written the state, and the held request lands just after it. At most `max`.
fn hold_until_retried(state: &State, request: &Request, seq: usize, max: Duration) -> String {
    let started = Instant::now();
    let segment = last_segment(&request.target);
    let mut answered = state.answered.lock().unwrap();
    loop {
        let retry = answered.iter().find(|(other, other_segment, body)| {
            *other > seq && *other_segment == segment && (body.is_empty() || *body == request.body)
        });
        if let Some((other, _, _)) = retry {
            return format!(
                "held until #{other} was answered, {} ms",
                started.elapsed().as_millis()
            );
        }
        let left = max.saturating_sub(started.elapsed());
        if left.is_zero() {
            return format!("held {} ms: no retry came", started.elapsed().as_millis());
        }
        answered = state.answered_now.wait_timeout(answered, left).unwrap().0;
    }
}

fn read_answer(upstream: &mut TcpStream, method: &str) -> Result<Answer, String> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut eof = false;
    let end = loop {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            break end;
        }
        match upstream.read(&mut chunk) {
            Ok(0) => return Err("closed before the head".into()),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the head: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let status_line = head.lines().next().unwrap_or("");
    let mut words = status_line.splitn(3, ' ');
    let _version = words.next();
    let status: u16 = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = words.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut rest = data[end + 4..].to_vec();
    let mut fill = |rest: &mut Vec<u8>, eof: &mut bool| -> Result<(), String> {
        match upstream.read(&mut chunk) {
            Ok(0) => {
                *eof = true;
                Ok(())
            }
            Ok(n) => {
                rest.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("reading the body: {e}")),
        }
    };
    let body = if method == "HEAD" || status == 204 || status == 304 {
        vec![]
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = vec![];
        loop {
            let line_end = loop {
                if let Some(at) = find(&rest, b"\r\n") {
                    break at;
                }
                fill(&mut rest, &mut eof)?;
                if eof {
                    return Err("closed inside a chunk size".into());
                }
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            while rest.len() < line_end + 2 + size + 2 {
                fill(&mut rest, &mut eof)?;
                if eof {
                    // The last chunk's trailer may be cut at the close: the body is whole.
                    if size == 0 {
                        break;
                    }
                    return Err("closed inside a chunk".into());
                }
            }
            if size == 0 {
                break body;
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
        }
    } else if let Some(length) = header(&head, "content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length {length}"))?;
        while rest.len() < length {
            fill(&mut rest, &mut eof)?;
            if eof {
                return Err(format!(
                    "closed after {} of {length} body bytes",
                    rest.len()
                ));
            }
        }
        rest.truncate(length);
        rest
    } else {
        while !eof {
            fill(&mut rest, &mut eof)?;
        }
        rest
    };
    Ok(Answer {
        status,
        reason,
        headers,
        body,
    })
}

/// `%40` -> `@` and so on (a `%` that starts no escape stays as it is).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The proxy itself, against the real Synapse: what each fault looks like to a reqwest client
/// (synbatch's own), that Synapse got the forwarded ones, and that reqwest retries none of
/// them by itself, on a fresh connection or a pooled one.
mod self_test {
    use super::*;
    use crate::common;

    const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

    /// What the client got: a status, or the kind of error.
    async fn ask(client: &reqwest::Client, url: &str, token: &str) -> String {
        let response = match client.get(url).bearer_auth(token).send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return "timeout".into(),
            Err(e) => return format!("error before the body: {e:?}"),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(_) => status.to_string(),
            Err(e) if e.is_timeout() => "timeout".into(),
            Err(e) => format!("{status} then a body error: {e:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn each_fault_reaches_the_client_as_documented() {
        let hs = common::synapse("relaxed");
        let timeout = Duration::from_millis(600);
        for fault in [Fault::Pass].into_iter().chain(Fault::ALL) {
            let mut config = Config::new(7, 1.0, timeout);
            config.faults = vec![fault];
            if fault == Fault::Pass {
                config.rate = 0.0;
            }
            let proxy = ChaosProxy::start(&hs.url, config);
            let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
            let got = ask(&client, &format!("{}{WHOAMI}", proxy.url), &hs.admin_token).await;
            let want_ok = match fault {
                Fault::Pass => got == "200",
                Fault::Refuse503 => got == "503",
                Fault::Lost502 => got == "502",
                Fault::Limited429 => got == "429",
                Fault::Late => got == "timeout",
                Fault::Reset => got.contains("error before the body") && got.contains("reset"),
                Fault::Torn => got.starts_with("200 then a body error"),
            };
            assert!(want_ok, "{}: the client got {got}", fault.name());
            assert!(proxy.settle(Duration::from_secs(10)), "{}", fault.name());
            let records = proxy.records();
            assert_eq!(
                records.len(),
                1,
                "{}: reqwest retried: {records:?}",
                fault.name()
            );
            assert_eq!(records[0].fault, fault);
            assert_eq!(records[0].path, WHOAMI);
            let upstream = if fault.forwards() { Some(200) } else { None };
            assert_eq!(records[0].upstream, upstream, "{}", fault.name());
            assert!(proxy.problems().is_empty(), "{:?}", proxy.problems());
        }
    }

    /// A fault on a pooled keep-alive connection: the request is not retried by reqwest, the
    /// connection is not reused, and the next request gets a new one.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_fault_on_a_pooled_connection_is_not_retried_and_the_next_request_works() {
        let hs = common::synapse("relaxed");
        for fault in [Fault::Reset, Fault::Torn, Fault::Lost502] {
            let mut config = Config::new(7, 1.0, Duration::from_secs(1));
            config.faults = vec![fault];
            config.exempt_paths = vec![WHOAMI.into()];
            let proxy = ChaosProxy::start(&hs.url, config);
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let whoami = format!("{}{WHOAMI}", proxy.url);
            let version = format!("{}/_synapse/admin/v1/server_version", proxy.url);
            // Pauses let the connection go back to the pool (or be dropped) before the next.
            let pause = Duration::from_millis(100);
            assert_eq!(ask(&client, &whoami, &hs.admin_token).await, "200");
            tokio::time::sleep(pause).await;
            let faulted = ask(&client, &version, &hs.admin_token).await;
            assert_ne!(faulted, "200", "{}", fault.name());
            tokio::time::sleep(pause).await;
            assert_eq!(ask(&client, &whoami, &hs.admin_token).await, "200");
            assert!(proxy.settle(Duration::from_secs(5)));
            let records = proxy.records();
            let faults: Vec<Fault> = records.iter().map(|r| r.fault).collect();
            assert_eq!(
                faults,
                vec![Fault::Pass, fault, Fault::Pass],
                "{}: {records:?}",
                fault.name()
            );
            let conns: Vec<usize> = records.iter().map(|r| r.conn).collect();
            assert_eq!(
                conns[1],
                conns[0],
                "{}: not pooled: {records:?}",
                fault.name()
            );
            assert_eq!(
                conns[2] == conns[1],
                fault == Fault::Lost502,
                "{}: only a 502 keeps the connection: {records:?}",
                fault.name()
            );
        }
    }

    /// A chunked request (which synbatch never sends) is refused and noted as a proxy
    /// problem, so a chaos test that met one fails instead of judging a run it broke.
    #[test]
    fn a_chunked_request_is_refused_and_noted() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = ChaosProxy::start(
            &format!("http://{}", upstream.local_addr().unwrap()),
            Config::new(1, 0.0, Duration::from_secs(1)),
        );
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let problems = proxy.problems();
        assert!(
            problems.len() == 1 && problems[0].contains("Transfer-Encoding: chunked"),
            "{problems:?}"
        );
        assert!(proxy.records().is_empty(), "nothing was forwarded");
    }

    /// The same seed picks the same faults for the same requests, whatever else came between.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_seed_replays() {
        let hs = common::synapse("relaxed");
        let mut seen = vec![];
        for _ in 0..2 {
            let mut config = Config::new(99, 0.5, Duration::from_millis(300));
            config.faults = vec![Fault::Refuse503, Fault::Limited429];
            let proxy = ChaosProxy::start(&hs.url, config);
            let client = reqwest::Client::new();
            for n in 0..20 {
                let url = format!("{}/_synapse/admin/v1/server_version?n={n}", proxy.url);
                ask(&client, &url, &hs.admin_token).await;
            }
            seen.push(proxy.records().iter().map(|r| r.fault).collect::<Vec<_>>());
        }
        assert_eq!(seen[0], seen[1]);
        assert!(seen[0].contains(&Fault::Pass) && seen[0].contains(&Fault::Refuse503));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_and_decoding() {
        assert_eq!(fnv1a("GET /x #1"), fnv1a("GET /x #1"));
        assert_ne!(fnv1a("GET /x #1"), fnv1a("GET /x #2"));
        assert_eq!(
            percent_decode("/_synapse/admin/v2/users/%40a%3Ab%25"),
            "/_synapse/admin/v2/users/@a:b%"
        );
        assert_eq!(percent_decode("/x%2"), "/x%2");
    }
}
