//! Storage: the embedded dynoxide (DynamoDB and its stream) with the stack's table, in
//! memory or in the state directory, and the sweeper that stands in for DynamoDB's TTL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;
use lambda_local::EmbeddedDynamo;
use tokio::task::JoinHandle;

use super::{StackOptions, DATABASE_FILE};
use crate::stream_poller::StreamPollerClients;

/// The running database and what the rest of the stack needs of it.
pub(super) struct Storage {
    pub(super) dynamo: EmbeddedDynamo,
    pub(super) endpoint: String,
    /// The database file, `None` in memory.
    pub(super) database_path: Option<PathBuf>,
    pub(super) client: aws_sdk_dynamodb::Client,
    pub(super) ttl_sweeper: JoinHandle<()>,
}

impl Storage {
    /// Opens the database, serves it and creates the table.
    pub(super) async fn start(options: &StackOptions, sdk: &SdkConfig) -> anyhow::Result<Self> {
        let (database, database_path) = open_database(options)?;
        let dynamo = EmbeddedDynamo::start(database.clone()).context("starting dynoxide")?;
        let endpoint = dynamo.endpoint();
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .endpoint_url(&endpoint)
                .build(),
        );
        shared::store::create_table(&client, &options.table_name)
            .await
            .with_context(|| format!("creating table {}", options.table_name))?;
        let ttl_sweeper = spawn_ttl_sweeper(database, options.ttl_sweep_interval);
        Ok(Self {
            dynamo,
            endpoint,
            database_path,
            client,
            ttl_sweeper,
        })
    }

    /// The clients of a stream poller: this database's table and stream, and `sqs` for the
    /// on-failure destination.
    pub(super) fn stream_poller_clients(
        &self,
        sdk: &SdkConfig,
        sqs: &aws_sdk_sqs::Client,
    ) -> StreamPollerClients {
        StreamPollerClients {
            dynamodb: self.client.clone(),
            streams: aws_sdk_dynamodbstreams::Client::from_conf(
                aws_sdk_dynamodbstreams::config::Builder::from(sdk)
                    .endpoint_url(&self.endpoint)
                    .build(),
            ),
            sqs: Some(sqs.clone()),
        }
    }
}

fn open_database(options: &StackOptions) -> anyhow::Result<(dynoxide::Database, Option<PathBuf>)> {
    if options.in_memory {
        let database = lambda_local::open_dynoxide(None).map_err(anyhow::Error::msg)?;
        return Ok((database, None));
    }
    std::fs::create_dir_all(&options.state_dir)
        .with_context(|| format!("creating {}", options.state_dir.display()))?;
    let path = options.state_dir.join(DATABASE_FILE);
    if options.reset {
        remove_database_files(&path)?;
    }
    let text = path
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
    let database = lambda_local::open_dynoxide(Some(text)).map_err(anyhow::Error::msg)?;
    Ok((database, Some(path)))
}

/// The database and SQLite's journal files next to it.
fn remove_database_files(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("removing {}", file.display()))
            }
        }
    }
    Ok(())
}

/// dynoxide has no background TTL: expired items are deleted only when swept.
fn spawn_ttl_sweeper(database: dynoxide::Database, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let database = database.clone();
            match tokio::task::spawn_blocking(move || database.sweep_ttl()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(deleted)) => tracing::info!("TTL sweep deleted {deleted} expired items"),
                Ok(Err(error)) => tracing::warn!("TTL sweep failed: {error}"),
                Err(error) => tracing::warn!("TTL sweep task failed: {error}"),
            }
        }
    })
}
