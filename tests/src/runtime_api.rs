//! A minimal Lambda Runtime API (and API Gateway `@connections`) on 127.0.0.1, for running a
//! real function binary outside Lambda: what `bench_init` starts each binary against.
//!
//! It serves exactly what a `lambda_runtime` client calls
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//!
//! - `GET /2018-06-01/runtime/invocation/next`: reported as [`ApiEvent::Next`] the moment it
//!   arrives (the runtime is initialised and idle), then held until the harness hands over
//!   the next [`Invocation`];
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `…/error`: `202`;
//! - `POST /2018-06-01/runtime/init/error`: `202`;
//!
//! and `POST /@connections/{id}` (any stage prefix) with `200`, so functions that push can
//! point `WS_MANAGEMENT_ENDPOINT` here. Blocking std sockets, one thread per connection: the
//! emulator adds microseconds, not the milliseconds being measured.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request body accepted (Lambda's synchronous response limit is 6 MB).
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Longest header section accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One event handed to the runtime.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Vec<u8>,
}

/// What the runtime did, with when the emulator saw it.
#[derive(Debug, Clone)]
pub enum ApiEvent {
    /// The runtime asked for its next event: it is initialised (first time) or done.
    Next {
        at: Instant,
    },
    /// The event of `request_id` was written to the runtime.
    Delivered {
        request_id: String,
        at: Instant,
    },
    Response {
        request_id: String,
        body: Vec<u8>,
        at: Instant,
    },
    Error {
        request_id: String,
        body: Vec<u8>,
        at: Instant,
    },
    InitError {
        body: Vec<u8>,
        at: Instant,
    },
    /// A post to a WebSocket connection through the management API.
    Push {
        connection_id: String,
        at: Instant,
    },
}

/// A running emulator; stops (and releases a runtime waiting on `/next`) when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    events: Receiver<ApiEvent>,
    invocations: Option<Sender<Invocation>>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (event_tx, events) = mpsc::channel();
        let (invocations, invocation_rx) = mpsc::channel::<Invocation>();
        let invocation_rx = Arc::new(Mutex::new(invocation_rx));
        let stop = Arc::new(AtomicBool::new(false));
        let accept_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("runtime-api".to_owned())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let events = event_tx.clone();
                    let invocations = Arc::clone(&invocation_rx);
                    // A connection whose thread cannot start is simply not served; the
                    // runtime then fails and the harness reports it.
                    let _not_served = std::thread::Builder::new()
                        .name("runtime-api-conn".to_owned())
                        .spawn(move || serve(stream, &events, &invocations));
                }
            })?;
        Ok(Self {
            addr,
            events,
            invocations: Some(invocations),
            stop,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port`, for `WS_MANAGEMENT_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Hands `invocation` to the runtime's pending (or next) `/next`.
    pub fn invoke(&self, invocation: Invocation) -> Result<(), String> {
        self.invocations
            .as_ref()
            .ok_or("the emulator is stopped")?
            .send(invocation)
            .map_err(|_| "the emulator is stopped".to_owned())
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Result<ApiEvent, String> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Ok(event),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("nothing from the runtime in {timeout:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => Err("the emulator stopped".to_owned()),
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the channel releases a connection thread parked in `/next`; connecting
        // once wakes the accept loop so it sees `stop`.
        self.invocations = None;
        let _wake_only = TcpStream::connect(self.addr);
    }
}

/// One request as read from the socket.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn serve(stream: TcpStream, events: &Sender<ApiEvent>, invocations: &Mutex<Receiver<Invocation>>) {
    // Without it a small response can wait for the peer's delayed ACK (tens of ms).
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        let at = Instant::now();
        let path = request.path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // Each event reaches the harness before the runtime gets its answer, so the
        // harness sees them in the order the runtime caused them (a response, then the
        // next `/next`, possibly on another connection).
        let written = match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["2018-06-01", "runtime", "invocation", "next"]) => {
                let Some(invocation) = next_invocation(events, invocations, at) else {
                    return;
                };
                write_invocation(&mut writer, &invocation)
            }
            ("POST", ["2018-06-01", "runtime", "invocation", id, outcome]) => {
                let request_id = (*id).to_owned();
                let body = request.body;
                let event = if *outcome == "response" {
                    ApiEvent::Response {
                        request_id,
                        body,
                        at,
                    }
                } else {
                    ApiEvent::Error {
                        request_id,
                        body,
                        at,
                    }
                };
                if events.send(event).is_err() {
                    return;
                }
                write_response(&mut writer, 202, br#"{"status":"OK"}"#)
            }
            ("POST", ["2018-06-01", "runtime", "init", "error"]) => {
                if events
                    .send(ApiEvent::InitError {
                        body: request.body,
                        at,
                    })
                    .is_err()
                {
                    return;
                }
                write_response(&mut writer, 202, br#"{"status":"OK"}"#)
            }
            ("POST", [.., "@connections", id]) => {
                let push = ApiEvent::Push {
                    connection_id: (*id).to_owned(),
                    at,
                };
                if events.send(push).is_err() {
                    return;
                }
                write_response(&mut writer, 200, b"")
            }
            _ => write_response(&mut writer, 404, br#"{"message":"not found"}"#),
        };
        if written.is_err() {
            return;
        }
    }
}

/// `/next`: waits for the harness's next invocation, telling it when the runtime asked and
/// when it got one; `None` once the harness is gone.
fn next_invocation(
    events: &Sender<ApiEvent>,
    invocations: &Mutex<Receiver<Invocation>>,
    at: Instant,
) -> Option<Invocation> {
    events.send(ApiEvent::Next { at }).ok()?;
    let invocation = invocations.lock().ok().and_then(|rx| rx.recv().ok())?;
    events
        .send(ApiEvent::Delivered {
            request_id: invocation.request_id.clone(),
            at: Instant::now(),
        })
        .ok()?;
    Some(invocation)
}

/// Reads one HTTP/1.1 request (`Content-Length` or chunked body); `None` at end of stream.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid("malformed request line"));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = HashMap::new();
    let mut header_bytes = 0;
    loop {
        let mut header = String::new();
        let read = reader.read_line(&mut header)?;
        header_bytes += read;
        if read == 0 || header_bytes > MAX_HEADER_BYTES {
            return Err(invalid("header section too large or truncated"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(reader)?
    } else {
        let length: usize = headers
            .get("content-length")
            .map(|v| v.parse().map_err(|_| invalid("bad content-length")))
            .transpose()?
            .unwrap_or(0);
        if length > MAX_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request { method, path, body }))
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_hex = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
        if size == 0 {
            return Ok(body);
        }
    }
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

fn write_invocation(writer: &mut impl Write, invocation: &Invocation) -> std::io::Result<()> {
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 10_000;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Lambda-Runtime-Aws-Request-Id: {}\r\nLambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:bench\r\n\
         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\r\n",
        invocation.payload.len(),
        invocation.request_id,
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(&invocation.payload)?;
    writer.flush()
}

fn write_response(writer: &mut impl Write, status: u16, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        _ => "Not Found",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn send(addr: &str, raw: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        status
    }

    #[test]
    fn hands_out_an_invocation_and_records_the_response() {
        let api = RuntimeApi::start().unwrap();
        let addr = api.host_port();
        let client = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let request = read_response_head(&mut reader);
            assert!(
                request.contains("Lambda-Runtime-Aws-Request-Id: r-1"),
                "{request}"
            );
            let mut payload = vec![0; 7];
            reader.read_exact(&mut payload).unwrap();
            assert_eq!(payload, br#"{"a":1}"#);
            stream
                .write_all(
                    b"POST /2018-06-01/runtime/invocation/r-1/response HTTP/1.1\r\n\
                      Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                )
                .unwrap();
            read_response_head(&mut reader)
        });
        let timeout = Duration::from_secs(5);
        assert!(matches!(
            api.next_event(timeout).unwrap(),
            ApiEvent::Next { .. }
        ));
        api.invoke(Invocation {
            request_id: "r-1".to_owned(),
            payload: br#"{"a":1}"#.to_vec(),
        })
        .unwrap();
        assert!(matches!(
            api.next_event(timeout).unwrap(),
            ApiEvent::Delivered { .. }
        ));
        match api.next_event(timeout).unwrap() {
            ApiEvent::Response {
                request_id, body, ..
            } => {
                assert_eq!(request_id, "r-1");
                assert_eq!(body, b"ok");
            }
            other => panic!("expected the response, got {other:?}"),
        }
        assert!(client.join().unwrap().starts_with("HTTP/1.1 202"));
        let status = send(
            &api.host_port(),
            "POST /prod/@connections/abc HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(matches!(
            api.next_event(timeout).unwrap(),
            ApiEvent::Push { connection_id, .. } if connection_id == "abc"
        ));
    }

    fn read_response_head(reader: &mut impl BufRead) -> String {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                return head;
            }
            head.push_str(&line);
        }
    }
}
