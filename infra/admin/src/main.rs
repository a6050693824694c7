//! `ripple-admin backfill-feeds`: see the crate documentation (`src/lib.rs`).
//! `ripple-admin new-signing-key`: a new access-token key pair for a rotation
//! (docs/deploy.md, "Access-token keys").
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
    /// Generates an Ed25519 access-token key: writes the private JWK (the Secrets Manager
    /// secret's value) to a new file only its owner can read, prints the public JWK (to add
    /// to the JwtPublicKeys JWKS).
    NewSigningKey {
        /// The key id, e.g. the month of the rotation: `2026-12-a`.
        #[arg(long)]
        kid: String,
        /// Where the private JWK is written; must not exist yet.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Writes a new signing key to `out` (mode 0600, never overwriting) and returns its public JWK.
fn new_signing_key(kid: &str, out: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    let key = shared::auth::SigningKey::generate(kid)?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open
        .open(out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    file.write_all(key.to_private_jwk_json().as_bytes())?;
    Ok(key.public_key().to_jwk().to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::NewSigningKey { kid, out } => {
            println!("{}", new_signing_key(&kid, &out)?);
            eprintln!(
                "private key written to {}: store it as the secret's value, then delete the file",
                out.display()
            );
            Ok(())
        }
        Command::BackfillFeeds {
            table,
            endpoint,
            page_size,
            restart,
            max_pages,
            materialize_max_followers,
            entry_ttl_days,
        } => {
            let sdk = match &endpoint {
                Some(_) => shared::aws::local_sdk_config(),
                None => aws_config::defaults(BehaviorVersion::latest()).load().await,
            };
            let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
            if let Some(endpoint) = endpoint {
                config = config.endpoint_url(endpoint);
            }
            let store =
                DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config.build()), table);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_signing_key_is_written_privately_once_and_its_public_half_printed() {
        let out = std::env::temp_dir().join(format!("ripple-key-{}.json", uuid_like()));
        let public = new_signing_key("2027-01-a", &out).unwrap();
        let private = std::fs::read_to_string(&out).unwrap();
        let key = shared::auth::SigningKey::from_jwk_json(&private).unwrap();
        assert_eq!(public, key.public_key().to_jwk().to_string());
        assert!(!public.contains("\"d\""), "{public}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert!(
            new_signing_key("2027-01-b", &out).is_err(),
            "never overwrites"
        );
        std::fs::remove_file(&out).unwrap();
    }

    fn uuid_like() -> String {
        format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    }
}
