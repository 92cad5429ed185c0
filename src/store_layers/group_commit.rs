//! Group commit: creates that wait for durability at the same moment share one commit.
//!
//! A create is answered only once it is durable, and durability costs a flush to disk:
//! an fsync for redb, a WAL flush for PostgreSQL. That wait is the disk's, not the CPU's,
//! so committing creates one at a time caps a process at about one create per fsync
//! (3,682/s measured before this module, docs/benchmarks.md) however idle the cores are.
//! Databases solve this with *group commit*, and so does this module: every insert goes
//! through a queue to one writer task, which takes everything waiting (at most
//! `store.max_group`), hands it to [`LinkStore::insert_batch`] (one transaction and one
//! fsync, or one multi-row statement), and only then answers each create with its own
//! outcome. An alias taken before the group, or by an earlier create of the same group,
//! fails that create alone.
//!
//! Unlike the click batcher there is no linger: a lone create commits at once. Groups
//! form by themselves while the previous commit is on disk, so they grow with the load
//! and the latency of a create stays about two commits at worst. The batching trade-off
//! (throughput for latency) is paid only when there is a queue anyway.
//!
//! Every other operation goes straight to the store.

use std::sync::Arc;

use async_trait::async_trait;
use metrics::Histogram;
use shortener_core::{
    ClickClaim, InsertOutcome, Link, LinkStore, ListPage, Owner, ShortCode, StoreError,
};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::STORE_GROUP_SIZE;

/// One create waiting for its group to commit.
struct Waiting {
    link: Link,
    answer: oneshot::Sender<Result<InsertOutcome, StoreError>>,
}

/// A [`LinkStore`] whose inserts are committed in groups by one writer task.
pub struct GroupCommit {
    store: Arc<dyn LinkStore>,
    queue: mpsc::Sender<Waiting>,
}

impl GroupCommit {
    /// Wraps `store`, spawning the writer task on the current runtime. At most
    /// `max_group` creates share a commit; as many more wait in the queue, and past that
    /// a create waits for room (backpressure, not an unbounded queue).
    pub fn new(store: Arc<dyn LinkStore>, max_group: usize) -> Self {
        let max_group = max_group.max(1);
        let (queue, waiting) = mpsc::channel(max_group);
        tokio::spawn(write_groups(store.clone(), waiting, max_group));
        Self { store, queue }
    }
}

/// The writer: one group at a time, until every [`GroupCommit`] handle is dropped.
///
/// One at a time on purpose: with two groups committing at once (measured, see
/// docs/benchmarks.md) the same creates only split into groups half the size.
async fn write_groups(
    store: Arc<dyn LinkStore>,
    mut waiting: mpsc::Receiver<Waiting>,
    max_group: usize,
) {
    let size: Histogram = metrics::histogram!(STORE_GROUP_SIZE);
    let mut group = Vec::with_capacity(max_group);
    // `recv_many` waits for the first create, then takes whatever else is already queued.
    while waiting.recv_many(&mut group, max_group).await > 0 {
        size.record(group.len() as f64);
        commit(&*store, group.drain(..)).await;
    }
}

/// Commits one group and answers each of its creates.
async fn commit(store: &dyn LinkStore, group: impl Iterator<Item = Waiting>) {
    let (links, answers): (Vec<Link>, Vec<_>) = group.map(|w| (w.link, w.answer)).unzip();
    // Each create gets its own link's outcome: what every backend promises.
    let mut outcomes = store.insert_batch(&links).await;
    if outcomes.len() != links.len() {
        let error = StoreError::backend(format!(
            "insert_batch answered {} of {} links",
            outcomes.len(),
            links.len()
        ));
        outcomes = vec![Err(error); links.len()];
    }
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        // A create whose client went away no longer listens; its link is stored all
        // the same, as it would be without grouping.
        let _ = answer.send(outcome);
    }
}

/// The writer task is gone (it only stops when the last handle is dropped, or panicked).
fn writer_gone() -> StoreError {
    StoreError::backend("group commit writer stopped")
}

#[async_trait]
impl LinkStore for GroupCommit {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        let (answer, outcome) = oneshot::channel();
        let waiting = Waiting {
            link: link.clone(),
            answer,
        };
        self.queue.send(waiting).await.map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }

    async fn insert_batch(&self, links: &[Link]) -> Vec<Result<InsertOutcome, StoreError>> {
        self.store.insert_batch(links).await
    }

    fn keeps_click_budgets(&self) -> bool {
        self.store.keeps_click_budgets()
    }

    async fn claim_click(&self, code: &ShortCode) -> Result<ClickClaim, StoreError> {
        self.store.claim_click(code).await
    }

    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError> {
        self.store.get(code).await
    }

    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError> {
        self.store.delete(code).await
    }

    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError> {
        self.store.list(after, limit, owner).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.store.close().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use shortener_core::{RedirectKind, TargetUrl};
    use time::OffsetDateTime;
    use tokio::sync::Semaphore;

    use super::*;

    fn link(code: &str) -> Link {
        Link {
            code: ShortCode::parse(code).expect("code"),
            target: TargetUrl::parse("https://example.com/").expect("url"),
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            redirect: RedirectKind::Found,
            max_clicks: None,
            owner: None,
        }
    }

    /// Records each batch's codes; holds each batch until the test lets it commit;
    /// fails batches containing `fail`.
    struct Recording {
        batches: Mutex<Vec<Vec<String>>>,
        commits: Semaphore,
    }

    impl Default for Recording {
        fn default() -> Self {
            Self {
                batches: Mutex::default(),
                commits: Semaphore::new(0),
            }
        }
    }

    #[async_trait]
    impl LinkStore for Recording {
        async fn insert_if_absent(&self, _: &Link) -> Result<InsertOutcome, StoreError> {
            unreachable!("group commit only sends batches")
        }
        async fn insert_batch(&self, links: &[Link]) -> Vec<Result<InsertOutcome, StoreError>> {
            let codes: Vec<String> = links.iter().map(|l| l.code.as_str().to_owned()).collect();
            self.batches.lock().expect("lock").push(codes.clone());
            self.commits.acquire().await.expect("open").forget();
            if codes.iter().any(|c| c == "fail") {
                return vec![Err(StoreError::backend("disk on fire")); codes.len()];
            }
            // "taken…" exists already; "broken…" fails alone, as one link of a CQL batch can.
            codes
                .iter()
                .map(|c| {
                    if c.starts_with("taken") {
                        Ok(InsertOutcome::AlreadyExists)
                    } else if c.starts_with("broken") {
                        Err(StoreError::backend("this link's write timed out"))
                    } else {
                        Ok(InsertOutcome::Inserted)
                    }
                })
                .collect()
        }
        async fn get(&self, _: &ShortCode) -> Result<Option<Link>, StoreError> {
            Ok(None)
        }
        async fn delete(&self, _: &ShortCode) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn list(
            &self,
            _: Option<ShortCode>,
            _: usize,
            _: Option<&Owner>,
        ) -> Result<ListPage, StoreError> {
            Ok(ListPage::default())
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn close(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// Spawns a create of each code and lets every spawned task run up to its wait.
    async fn spawn_creates(
        groups: &Arc<GroupCommit>,
        codes: impl Iterator<Item = String>,
    ) -> Vec<tokio::task::JoinHandle<Result<InsertOutcome, StoreError>>> {
        let tasks = codes
            .map(|code| {
                let groups = groups.clone();
                tokio::spawn(async move { groups.insert_if_absent(&link(&code)).await })
            })
            .collect();
        // Current-thread runtime: one yield runs every task spawned before it.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        tasks
    }

    #[tokio::test(flavor = "current_thread")]
    async fn creates_arriving_during_a_commit_share_the_next_one_and_get_their_own_answers() {
        let store = Arc::new(Recording::default());
        let groups = Arc::new(GroupCommit::new(store.clone(), 256));
        let first = spawn_creates(&groups, ["alone".to_owned()].into_iter()).await;
        // While the first group is committing, 63 creates arrive.
        let codes = (0..62)
            .map(|i| format!("c{i}"))
            .chain(["taken1".to_owned()]);
        let rest = spawn_creates(&groups, codes).await;
        store.commits.add_permits(2);
        for task in first {
            assert_eq!(
                task.await.expect("join").expect("ok"),
                InsertOutcome::Inserted
            );
        }
        let outcomes: Vec<InsertOutcome> = {
            let mut out = Vec::new();
            for task in rest {
                out.push(task.await.expect("join").expect("ok"));
            }
            out
        };
        let sizes: Vec<usize> = store
            .batches
            .lock()
            .expect("lock")
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [1, 63], "one commit for everything that waited");
        assert_eq!(outcomes[..62], [InsertOutcome::Inserted; 62]);
        assert_eq!(
            outcomes[62],
            InsertOutcome::AlreadyExists,
            "a taken code fails alone"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_commit_fails_every_create_of_its_group_and_only_those() {
        let store = Arc::new(Recording::default());
        let groups = Arc::new(GroupCommit::new(store.clone(), 2));
        let blocked = spawn_creates(&groups, ["first".to_owned()].into_iter()).await;
        let doomed = spawn_creates(&groups, ["ok".to_owned(), "fail".to_owned()].into_iter()).await;
        let later = spawn_creates(&groups, ["after".to_owned()].into_iter()).await;
        store.commits.add_permits(3);
        for task in blocked.into_iter().chain(later) {
            assert_eq!(
                task.await.expect("join").expect("ok"),
                InsertOutcome::Inserted
            );
        }
        for task in doomed {
            assert!(matches!(
                task.await.expect("join"),
                Err(StoreError::Backend { .. })
            ));
        }
        let sizes: Vec<usize> = store
            .batches
            .lock()
            .expect("lock")
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [1, 2, 1], "at most max_group per commit");
    }

    #[tokio::test]
    async fn a_link_that_fails_alone_fails_only_its_own_create() {
        let store = Arc::new(Recording::default());
        let groups = Arc::new(GroupCommit::new(store.clone(), 8));
        let blocked = spawn_creates(&groups, ["first".to_owned()].into_iter()).await;
        let group = ["ok1", "broken", "ok2"].map(str::to_owned);
        let tasks = spawn_creates(&groups, group.into_iter()).await;
        store.commits.add_permits(2);
        blocked
            .into_iter()
            .next()
            .expect("one")
            .await
            .expect("join")
            .expect("ok");
        let outcomes: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.expect("join").ok())
            .collect();
        use InsertOutcome::Inserted;
        assert_eq!(outcomes, [Some(Inserted), None, Some(Inserted)]);
        assert_eq!(
            store.batches.lock().expect("lock").len(),
            2,
            "one commit for the three"
        );
    }
}
