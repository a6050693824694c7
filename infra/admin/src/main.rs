//! `ripple-admin backfill-feeds`: see the crate documentation (`src/lib.rs`).
//!
//! Against a deployment: `cargo run -p ripple-admin -- backfill-feeds --table <name>`
//! (credentials and region from the usual AWS environment). Against `make dev`:
//! `cargo run -p ripple-admin -- backfill-feeds --endpoint <DynamoDB URL from the banner>
//! --table ripple`.

use aws_config::BehaviorVersion;
use clap::{Parser, Subcommand};
use ripple_admin::{Backfill, BackfillOptions};
use shared::config::FeedLimits;
use shared::store::DynamoStore;

#[derive(Debug, Parser)]
#[command(
    name = "ripple-admin",
    about = "Operator commands for a Ripple deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Builds search items and materialized feeds for a table written before they existed.
    /// Idempotent and resumable (a checkpoint item records progress).
    BackfillFeeds {
        /// The table's name.
        #[arg(long, env = "TABLE_NAME")]
        table: String,
        /// A DynamoDB endpoint (e.g. `make dev`'s); without it, AWS from the environment.
        #[arg(long)]
        endpoint: Option<String>,
        /// Profiles per scan page (progress is recorded after each).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1000))]
        page_size: i32,
        /// Ignore a saved checkpoint and start from the beginning.
        #[arg(long)]
        restart: bool,
        /// Stop after this many pages (the next run resumes).
        #[arg(long)]
        max_pages: Option<usize>,
        /// The deployment's `FEED_MATERIALIZE_MAX_FOLLOWERS`.
        #[arg(long, env = "FEED_MATERIALIZE_MAX_FOLLOWERS", default_value_t = FeedLimits::default().materialize_max_followers)]
        materialize_max_followers: usize,
        /// The deployment's `FEED_ENTRY_TTL_DAYS`.
        #[arg(long, env = "FEED_ENTRY_TTL_DAYS", default_value_t = FeedLimits::default().entry_ttl_days)]
        entry_ttl_days: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::BackfillFeeds {
        table,
        endpoint,
        page_size,
        restart,
        max_pages,
        materialize_max_followers,
        entry_ttl_days,
    } = Cli::parse().command;
    let sdk = match &endpoint {
        Some(_) => shared::aws::local_sdk_config(),
        None => aws_config::defaults(BehaviorVersion::latest()).load().await,
    };
    let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config.build()), table);
    let options = BackfillOptions {
        limits: FeedLimits {
            materialize_max_followers,
            entry_ttl_days,
            ..FeedLimits::default()
        },
        page_size,
        restart,
        max_pages,
        now: chrono::Utc::now(),
    };
    let report = Backfill::new(store, options).run().await?;
    println!("{report:#?}");
    Ok(())
}
