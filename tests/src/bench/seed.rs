//! Users and follows written straight through the store (not REST), with access tokens
//! minted for the stack's secret: a 10,000-follower audience is set up in seconds and
//! without the REST budgets that guard registration.

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use shared::auth::TokenService;
use shared::config::Config;
use shared::domain::{DisplayName, UserId, Username};
use shared::store::DynamoStore;
use shared::store::NewUser;

use crate::realtime::{RealtimeStack, User};

/// Concurrent store writes while seeding (dynoxide serialises them anyway).
const SEED_CONCURRENCY: usize = 32;

/// A PHC string no password verifies against: seeded users never log in.
const NO_PASSWORD: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2VlZGVkLXVzZXI$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Writes users and follows into the stack's table.
pub struct Seeder {
    store: DynamoStore,
    tokens: TokenService,
}

impl Seeder {
    pub fn new(stack: &RealtimeStack) -> anyhow::Result<Self> {
        let local = &stack.stack;
        let config = Config::from_vars([
            ("TABLE_NAME".to_owned(), local.table_name.clone()),
            (
                "JWT_PUBLIC_KEYS".to_owned(),
                local.jwks.to_json().to_string(),
            ),
        ])?;
        let sdk = shared::aws::local_sdk_config();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&local.dynamodb_endpoint)
                .build(),
        );
        Ok(Self {
            store: DynamoStore::new(dynamodb, &local.table_name),
            tokens: TokenService::new(&config.jwt)?.with_signing_key(local.signing_key())?,
        })
    }

    /// `count` users named `{prefix}{i}`, each with an access token.
    pub async fn users(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
        stream::iter(0..count)
            .map(|i| self.user(format!("{prefix}{i}")))
            .buffered(SEED_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn user(&self, username: String) -> anyhow::Result<User> {
        let id = UserId::new();
        let now = Utc::now();
        self.store
            .create_user(NewUser {
                id,
                username: Username::parse(&username).unwrap(),
                display_name: DisplayName::parse(&username).unwrap(),
                password_hash: NO_PASSWORD.to_owned(),
                created_at: now,
            })
            .await
            .map_err(|e| anyhow::anyhow!("seeding {username}: {e}"))?;
        Ok(User {
            id: id.to_string(),
            token: self.tokens.issue(id, now)?,
            username,
        })
    }

    /// `count` followers of `author` without profiles, in bulk
    /// ([`shared::testkit::seed_followers`]): an audience that is never online costs
    /// seconds to set up, not a transaction each.
    pub async fn offline_followers(&self, author: &User, count: usize) -> anyhow::Result<()> {
        shared::testkit::seed_followers(&self.store, author.user_id(), count)
            .await
            .map_err(|e| anyhow::anyhow!("seeding {count} followers: {e}"))?;
        Ok(())
    }

    /// Every one of `followers` follows `author`.
    pub async fn follow(&self, followers: &[User], author: &User) -> anyhow::Result<()> {
        let author = author.user_id();
        stream::iter(followers)
            .map(|follower| async move {
                self.store
                    .follow(follower.user_id(), author, Utc::now())
                    .await
                    .map_err(|e| anyhow::anyhow!("{} follows: {e}", follower.username))
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}
