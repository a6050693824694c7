//! The embedded DynamoDB: dynoxide over HTTP on a local port, the engine of every test and of
//! `ripple-local`, plus the stream-record indexes that keep it fast as records pile up.

use std::net::SocketAddr;

use tokio::sync::oneshot;

/// Opens an embedded dynoxide database — in memory, or in `file` — whose writes and stream
/// reads do not slow down as stream records pile up.
///
/// dynoxide 3.2 keeps every stream record in one SQLite table with no index on the sequence
/// number: each write finds the next one with `MAX(CAST(sequence_number AS INTEGER))` over
/// the whole table and each `GetRecords` sorts the shard's records, so both grow linearly
/// with the writes so far (seeding 5,000 users and follows slowed to a few writes a
/// second, every profile sample in SQLite's b-tree walk). Two expression indexes matching
/// those queries make both an index seek. They are created through a second connection to
/// the same database (a named shared-cache in-memory database when there is no file), since
/// dynoxide does not expose its own; the queries are dynoxide's, unchanged, and
/// [`STREAM_RECORD_QUERIES`] is checked against the plan in this module's tests.
pub fn open_dynoxide(file: Option<&str>) -> Result<dynoxide::Database, String> {
    match file {
        Some(file) => open_dynoxide_at(file),
        None => open_dynoxide_at(&memory_database_uri()),
    }
}

/// A fresh named in-memory database that a second connection can open too.
fn memory_database_uri() -> String {
    format!(
        "file:dynoxide-{}?mode=memory&cache=shared",
        uuid::Uuid::new_v4().simple()
    )
}

fn open_dynoxide_at(path: &str) -> Result<dynoxide::Database, String> {
    let database =
        dynoxide::Database::new(path).map_err(|e| format!("opening dynoxide at {path}: {e}"))?;
    let indexer = rusqlite::Connection::open(path)
        .map_err(|e| format!("opening {path} to index stream records: {e}"))?;
    indexer
        .execute_batch(STREAM_RECORD_INDEXES)
        .map_err(|e| format!("indexing stream records in {path}: {e}"))?;
    Ok(database)
}

/// The indexes [`open_dynoxide`] adds to dynoxide's `_stream_records` table.
const STREAM_RECORD_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS ripple_stream_records_by_shard
        ON _stream_records (table_name, shard_id, CAST(sequence_number AS INTEGER));
    CREATE INDEX IF NOT EXISTS ripple_stream_records_by_table
        ON _stream_records (table_name, CAST(sequence_number AS INTEGER));";

/// dynoxide 3.2's stream-record queries (`storage.rs`), with the index each must use.
pub const STREAM_RECORD_QUERIES: [(&str, &str); 3] = [
    (
        "SELECT COALESCE(MAX(CAST(sequence_number AS INTEGER)), 0) + 1 FROM _stream_records WHERE table_name = ?1",
        "ripple_stream_records_by_table",
    ),
    (
        "SELECT event_name, keys_json, new_image, old_image, sequence_number, created_at, user_identity, event_id
             FROM _stream_records
             WHERE table_name = ?1 AND shard_id = ?2 AND CAST(sequence_number AS INTEGER) > ?3
             ORDER BY CAST(sequence_number AS INTEGER) ASC
             LIMIT ?4",
        "ripple_stream_records_by_shard",
    ),
    (
        "SELECT MIN(CAST(sequence_number AS INTEGER)), MAX(CAST(sequence_number AS INTEGER)) FROM _stream_records WHERE table_name = ?1 AND shard_id = ?2",
        "ripple_stream_records_by_shard",
    ),
];

/// The shard ids of a table's stream (`DescribeStream`).
pub async fn stream_shard_ids(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<Vec<String>, String> {
    let description = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .map_err(|e| format!("DescribeStream: {e:?}"))?;
    Ok(description
        .stream_description()
        .map(|d| {
            d.shards()
                .iter()
                .filter_map(|s| s.shard_id().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// A running embedded dynoxide server; stops when dropped.
pub struct EmbeddedDynamo {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedDynamo {
    /// Starts dynoxide on `127.0.0.1:0` over `database`, on a thread with its own runtime
    /// (so a test's single-threaded runtime never has to drive the server too).
    pub fn start(database: dynoxide::Database) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("dynoxide-{}", address.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _unreachable_receiver_is_fine = ready_tx.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _unreachable_receiver_is_fine = ready_tx.send(Err(error));
                            return;
                        }
                    };
                    let _unreachable_receiver_is_fine = ready_tx.send(Ok(()));
                    let served = dynoxide::server::serve_with_shutdown(listener, database, async {
                        // A dropped sender also means stop.
                        let _either_way_we_stop = stop.await;
                    })
                    .await;
                    if let Err(error) = served {
                        eprintln!("embedded dynoxide stopped with an error: {error}");
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("dynoxide thread exited before starting"))??;
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for EmbeddedDynamo {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already be gone; then there is nothing to stop.
            let _server_may_be_gone = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("embedded dynoxide thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod stream_record_index_tests {
    use super::*;

    #[test]
    fn dynoxides_stream_record_queries_seek_the_added_indexes() {
        let path = memory_database_uri();
        let _database = open_dynoxide_at(&path).expect("dynoxide opens");
        // The database lives while dynoxide's connection is open; this one sees the same.
        let connection = rusqlite::Connection::open(&path).expect("second connection");
        for (query, index) in STREAM_RECORD_QUERIES {
            let mut plan = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .expect("dynoxide's query still prepares against its table");
            let params = query.matches('?').count();
            let values: Vec<rusqlite::types::Value> = (0..params)
                .map(|i| rusqlite::types::Value::Integer(i as i64))
                .collect();
            let details: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(values), |row| row.get(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("plan rows");
            let plan = details.join(" | ");
            assert!(plan.contains(index), "{query}: {plan}");
            assert!(!plan.contains("SCAN"), "{query}: {plan}");
        }
    }
}
