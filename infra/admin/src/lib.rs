//! `ripple-admin`: operator commands run against a deployment's table.
//!
//! `backfill-feeds` migrates a table written before materialized feeds and search items
//! existed (`docs/data-model.md`, "Home feed"; "Username search"):
//!
//! 1. **profiles** — every user gets their search item (and loses the old search keys on
//!    the profile), and every author with more followers than `FEED_MATERIALIZE_MAX_FOLLOWERS`
//!    is promoted to the merged feed;
//! 2. **feeds** — every user's feed is written from the follow graph as the push worker's
//!    tasks would have written it (own posts and followed ordinary authors' posts younger
//!    than the entry TTL, a marker per followed large author).
//!
//! Both phases scan the profiles a page at a time and record the scan position in a
//! checkpoint item after each page, so an interrupted run resumes where it stopped. Every
//! write is a put of a fixed key or a conditional rewrite, so running it again — resumed,
//! restarted or after it finished — gives the same table. A finished run deletes its
//! checkpoint. The new code paths keep both current once deployed; run the command right
//! after the deploy (until it has run, older users are missing from search and feeds).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use shared::config::FeedLimits;
use shared::domain::UserId;
use shared::error::{Error, Result};
use shared::feed::FeedMaterializer;
use shared::store::keys;
use shared::store::DynamoStore;

/// The checkpoint's job name.
const JOB: &str = "backfill-feeds";

/// Users migrated at once within a page.
const USERS_IN_FLIGHT: usize = 8;

/// A phase of the migration, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Profiles,
    Feeds,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Profiles => "profiles",
            Self::Feeds => "feeds",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        match name {
            "profiles" => Ok(Self::Profiles),
            "feeds" => Ok(Self::Feeds),
            other => Err(Error::invariant(format!(
                "unknown checkpoint phase {other:?}"
            ))),
        }
    }
}

/// How to run the migration.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub limits: FeedLimits,
    /// Profiles per scan page (the unit of progress recorded in the checkpoint).
    pub page_size: i32,
    /// Ignore a checkpoint and start from the beginning.
    pub restart: bool,
    /// Stop after this many pages (to test resuming); `None` runs to the end.
    pub max_pages: Option<usize>,
    /// "Now" for the entry TTL horizon.
    pub now: DateTime<Utc>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Where it started: `None` from the beginning, else the checkpoint's phase.
    pub resumed_in: Option<Phase>,
    pub profiles: usize,
    pub search_items_written: usize,
    pub authors_merged: usize,
    pub feeds: usize,
    pub feed_entries: usize,
    pub feed_markers: usize,
    /// The run reached the end (`false` when stopped by `max_pages`).
    pub finished: bool,
}

/// Where a scan stands: its phase and the last key of the last page done.
struct Checkpoint {
    phase: Phase,
    last_key: Option<HashMap<String, AttributeValue>>,
}

/// The migration over one table.
pub struct Backfill {
    store: Arc<DynamoStore>,
    feeds: FeedMaterializer,
    options: BackfillOptions,
}

impl Backfill {
    pub fn new(store: DynamoStore, options: BackfillOptions) -> Self {
        let store = Arc::new(store);
        let feeds = FeedMaterializer::new(store.clone(), options.limits);
        Self {
            store,
            feeds,
            options,
        }
    }

    /// Runs (or resumes) the migration.
    pub async fn run(&self) -> Result<BackfillReport> {
        let mut report = BackfillReport::default();
        let checkpoint = if self.options.restart {
            None
        } else {
            self.load_checkpoint().await?
        };
        report.resumed_in = checkpoint.as_ref().map(|c| c.phase);
        let mut pages = 0;
        let mut current = checkpoint.unwrap_or(Checkpoint {
            phase: Phase::Profiles,
            last_key: None,
        });
        loop {
            if self.options.max_pages.is_some_and(|max| pages >= max) {
                return Ok(report);
            }
            let (users, next) = self.scan_page(current.last_key.take()).await?;
            self.migrate(current.phase, &users, &mut report).await?;
            pages += 1;
            current = match (next, current.phase) {
                (Some(key), phase) => Checkpoint {
                    phase,
                    last_key: Some(key),
                },
                (None, Phase::Profiles) => Checkpoint {
                    phase: Phase::Feeds,
                    last_key: None,
                },
                (None, Phase::Feeds) => {
                    self.store
                        .table
                        .delete(&keys::admin_checkpoint(JOB))
                        .await?;
                    report.finished = true;
                    return Ok(report);
                }
            };
            self.save_checkpoint(&current).await?;
        }
    }

    /// One page of user ids from a scan of the profiles.
    async fn scan_page(
        &self,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<UserId>, Option<HashMap<String, AttributeValue>>)> {
        let output = self
            .store
            .table
            .client
            .scan()
            .table_name(&self.store.table.name)
            .filter_expression("entity = :user AND sk = :profile")
            .expression_attribute_values(":user", AttributeValue::S("user".to_owned()))
            .expression_attribute_values(":profile", AttributeValue::S(keys::PROFILE.to_owned()))
            .projection_expression("id")
            .limit(self.options.page_size)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| Error::internal("scanning profiles", e))?;
        let users = output
            .items()
            .iter()
            .map(|item| {
                item.get("id")
                    .and_then(|id| id.as_s().ok())
                    .and_then(|id| id.parse::<UserId>().ok())
                    .ok_or_else(|| Error::invariant("profile without an id"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((users, output.last_evaluated_key))
    }

    async fn migrate(
        &self,
        phase: Phase,
        users: &[UserId],
        report: &mut BackfillReport,
    ) -> Result<()> {
        match phase {
            Phase::Profiles => {
                let done: Vec<(bool, bool)> = stream::iter(users.iter().copied())
                    .map(|user| async move {
                        let (search, merged) = futures::try_join!(
                            self.store.rebuild_search_entry(user),
                            self.feeds.promote_if_large(user),
                        )?;
                        let written = search == shared::store::SearchEntryRebuild::Written;
                        Ok::<_, Error>((written, merged))
                    })
                    .buffer_unordered(USERS_IN_FLIGHT)
                    .try_collect()
                    .await?;
                report.profiles += done.len();
                report.search_items_written += done.iter().filter(|(w, _)| *w).count();
                report.authors_merged += done.iter().filter(|(_, m)| *m).count();
            }
            Phase::Feeds => {
                let now = self.options.now;
                let done: Vec<shared::feed::FeedOutcome> = stream::iter(users.iter().copied())
                    .map(|user| self.feeds.rebuild_feed(user, now))
                    .buffer_unordered(USERS_IN_FLIGHT)
                    .try_collect()
                    .await?;
                report.feeds += done.len();
                report.feed_entries += done.iter().map(|o| o.entries).sum::<usize>();
                report.feed_markers += done.iter().map(|o| o.markers).sum::<usize>();
            }
        }
        Ok(())
    }

    async fn load_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let Some(item) = self.store.table.get(&keys::admin_checkpoint(JOB)).await? else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let phase = Phase::parse(&text("phase").unwrap_or_default())?;
        let last_key = match (text("last_pk"), text("last_sk")) {
            (Some(pk), Some(sk)) => Some(HashMap::from([
                ("pk".to_owned(), AttributeValue::S(pk)),
                ("sk".to_owned(), AttributeValue::S(sk)),
            ])),
            _ => None,
        };
        Ok(Some(Checkpoint { phase, last_key }))
    }

    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let key = keys::admin_checkpoint(JOB);
        let mut item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(key.pk)),
            ("sk".to_owned(), AttributeValue::S(key.sk)),
            (
                "entity".to_owned(),
                AttributeValue::S("admin_checkpoint".to_owned()),
            ),
            (
                "phase".to_owned(),
                AttributeValue::S(checkpoint.phase.name().to_owned()),
            ),
        ]);
        if let Some(last) = &checkpoint.last_key {
            for (name, attribute) in [("pk", "last_pk"), ("sk", "last_sk")] {
                if let Some(value) = last.get(name) {
                    item.insert(attribute.to_owned(), value.clone());
                }
            }
        }
        self.store.table.put(item).await
    }
}
