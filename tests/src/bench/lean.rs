//! A lean WebSocket fleet: thousands of sockets, one small task each, that only look for a
//! marker in the frames they receive and stamp the first arrival. The full recording client
//! of the realtime suite (JSON parsing, inboxes) would measure itself at K = 5,000.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::realtime::{User, SUBPROTOCOL};

/// Concurrent handshakes while the fleet connects (each runs `ws-connect`).
const CONNECT_CONCURRENCY: usize = 16;

/// Raises this process's open-file soft limit to its hard limit: the bench holds both ends
/// of every socket (client and in-process gateway). Returns the new soft limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// What the fleet is waiting for: the first frame containing `marker` on each socket.
struct Round {
    marker: String,
    expected: usize,
    seen: Vec<bool>,
    arrivals: Vec<Instant>,
    /// The first matching frame, verbatim (the ceiling re-sends its bytes).
    first_frame: Option<String>,
    /// Frames containing the marker on a socket that already had it.
    duplicates: usize,
}

#[derive(Default)]
struct Shared {
    round: Mutex<Option<Round>>,
    done: Notify,
}

impl Shared {
    fn round(&self) -> MutexGuard<'_, Option<Round>> {
        self.round
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, socket: usize, text: &str) {
        let mut guard = self.round();
        let Some(round) = guard.as_mut() else {
            return;
        };
        if !text.contains(round.marker.as_str()) {
            return;
        }
        if round.seen[socket] {
            round.duplicates += 1;
            return;
        }
        round.seen[socket] = true;
        round.arrivals.push(Instant::now());
        round.first_frame.get_or_insert_with(|| text.to_owned());
        if round.arrivals.len() >= round.expected {
            self.done.notify_one();
        }
    }
}

/// The outcome of one round.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// First arrival per socket that got the marker, in arrival order.
    pub times: Vec<Instant>,
    pub first_frame: Option<String>,
    pub duplicates: usize,
}

impl Arrivals {
    pub fn last(&self) -> Option<Instant> {
        self.times.last().copied()
    }
}

/// Sockets held open by one user each.
pub struct Fleet {
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Opens one socket per user on `url` (token in the `ripple.v1` subprotocol).
    pub async fn connect(url: &str, users: &[User]) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let readers = stream::iter(users.iter().enumerate())
            .map(|(index, user)| open(url, user, index, Arc::clone(&shared)))
            .buffered(CONNECT_CONCURRENCY)
            .collect::<Vec<anyhow::Result<JoinHandle<()>>>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { shared, readers })
    }

    pub fn len(&self) -> usize {
        self.readers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    /// Starts watching for `marker`; [`wait`](Self::wait) returns once `expected` sockets
    /// have it. Call before the action that sends it.
    pub fn watch(&self, marker: &str, expected: usize) {
        *self.shared.round() = Some(Round {
            marker: marker.to_owned(),
            expected,
            seen: vec![false; self.readers.len()],
            arrivals: Vec::with_capacity(expected),
            first_frame: None,
            duplicates: 0,
        });
    }

    /// Waits until the watched marker reached its expected number of sockets, or `timeout`;
    /// returns what arrived either way and stops watching.
    pub async fn wait(&self, timeout: Duration) -> Arrivals {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.done.notified();
            if self.complete() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let round = self.shared.round().take();
        round.map_or(
            Arrivals {
                times: Vec::new(),
                first_frame: None,
                duplicates: 0,
            },
            |round| Arrivals {
                times: round.arrivals,
                first_frame: round.first_frame,
                duplicates: round.duplicates,
            },
        )
    }

    fn complete(&self) -> bool {
        self.shared
            .round()
            .as_ref()
            .is_some_and(|round| round.arrivals.len() >= round.expected)
    }

    /// Closes every socket (their tasks end; the gateway sees the sockets go).
    pub fn close(self) {
        for reader in self.readers {
            reader.abort();
        }
    }
}

async fn open(
    url: &str,
    user: &User,
    index: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut request = url.into_client_request()?;
    let protocols = HeaderValue::from_str(&format!("{SUBPROTOCOL}, {}", user.token))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols);
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{}: no handshake within 30 s", user.username))??;
    Ok(tokio::spawn(async move {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(text)) => shared.record(index, text.as_str()),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }))
}
