//! Aggregation: a batch of click events in, per-link statistics deltas out.
//!
//! Pure and synchronous (no I/O, no clock), so it is unit-tested exhaustively and the
//! future analytics consumer reuses it unchanged. The stats store then applies a
//! [`BatchAggregate`] atomically: counters add, visitor sketches merge, top-N tables
//! merge. Statistics are therefore *pre-computed*: reading a link's stats touches a few
//! rows per hour or day, never the raw clicks.
//!
//! What is counted, per link:
//! - per UTC hour and per UTC day: clicks, split into human and bot;
//! - per day: unique human visitors (a [`VisitorSketch`] of visitor ids: exact while
//!   small, a HyperLogLog once large);
//! - per day: top-N per dimension (referrer host, country, browser, OS, device), over all
//!   clicks, bots included (the device dimension shows how many were bots).

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ShortCode;
use crate::agent::{Agent, AgentClassifier, DeviceType};
use crate::click::{ClickEvent, DAY_MS};
use crate::topk::TopK;
use crate::visitors::VisitorSketch;

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// Referrer URLs remembered before the memo is cleared (bounds memory); the default
/// of [`MemoLimits::referrers`].
pub const REFERRER_MEMO_LIMIT: usize = 10_000;

/// Click counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// All clicks.
    pub total: u64,
    /// Clicks from browsers.
    pub human: u64,
    /// Clicks from crawlers, preview fetchers and scripts.
    pub bot: u64,
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: Counts) {
        self.total += other.total;
        self.human += other.human;
        self.bot += other.bot;
    }

    fn count(&mut self, is_bot: bool) {
        self.total += 1;
        if is_bot {
            self.bot += 1;
        } else {
            self.human += 1;
        }
    }
}

/// The dimensions with a top-N table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Host of the `Referer` (`(direct)` when absent).
    Referrer,
    /// Country from the trusted edge header (`(unknown)` when absent).
    Country,
    /// Browser family.
    Browser,
    /// Operating system.
    Os,
    /// Device class (desktop, mobile, bot, ...).
    Device,
}

impl Dimension {
    /// Every dimension, in storage order.
    pub const ALL: [Dimension; 5] = [
        Dimension::Referrer,
        Dimension::Country,
        Dimension::Browser,
        Dimension::Os,
        Dimension::Device,
    ];

    /// The name used in the API and in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referrer => "referrer",
            Self::Country => "country",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Device => "device",
        }
    }
}

/// One link's statistics for one UTC day: the unit a store keeps as one row.
///
/// Every part is sized to what the link received that day (docs/benchmarks.md,
/// "The long tail"): hours without clicks are absent, the visitor sketch is exact while small,
/// and a top-N table holds only the values seen. A link clicked once costs a few dozen
/// bytes, not the 2 KiB of a dense sketch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayAggregate {
    /// Click counters over the day.
    pub counts: Counts,
    /// Per UTC hour of the day (0..24), only hours with clicks, ascending.
    pub hours: Vec<(u8, Counts)>,
    /// Human visitor ids seen.
    pub visitors: VisitorSketch,
    /// Top-N tables, indexed like [`Dimension::ALL`].
    pub top: [TopK; 5],
}

impl DayAggregate {
    /// Counts one click in hour `hour` (0..24) of the day.
    fn count(&mut self, hour: u8, is_bot: bool) {
        self.counts.count(is_bot);
        // At most 24 entries and usually one: a linear scan from the end (clicks of a
        // batch arrive roughly in time order) beats any map.
        match self.hours.iter().rposition(|(h, _)| *h <= hour) {
            Some(i) if self.hours[i].0 == hour => self.hours[i].1.count(is_bot),
            position => {
                let at = position.map_or(0, |i| i + 1);
                let mut counts = Counts::default();
                counts.count(is_bot);
                crate::doubling::insert(&mut self.hours, at, (hour, counts));
            }
        }
    }

    /// Folds `other` (a later batch, or a stored day) into this day.
    pub fn merge(&mut self, other: &DayAggregate) {
        self.counts.add(other.counts);
        for &(hour, counts) in &other.hours {
            match self.hours.binary_search_by_key(&hour, |(h, _)| *h) {
                Ok(i) => self.hours[i].1.add(counts),
                Err(i) => crate::doubling::insert(&mut self.hours, i, (hour, counts)),
            }
        }
        self.visitors.merge(&other.visitors);
        for (mine, theirs) in self.top.iter_mut().zip(other.top.iter()) {
            mine.merge(theirs);
        }
    }
}

/// One link's share of a batch (or of several batches merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkAggregate {
    /// By UTC day number (Unix ms / [`DAY_MS`]), ascending. Nearly always one day: a
    /// vector, not a tree, for the same reason as [`DayAggregate::hours`].
    pub days: Vec<(i64, DayAggregate)>,
}

impl LinkAggregate {
    /// All clicks of the link in the aggregate.
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        self.days.iter().for_each(|(_, d)| total.add(d.counts));
        total
    }

    /// The day numbered `day`, if the aggregate has clicks on it.
    pub fn day(&self, day: i64) -> Option<&DayAggregate> {
        let i = self.days.binary_search_by_key(&day, |(d, _)| *d).ok()?;
        Some(&self.days[i].1)
    }

    /// The day numbered `day`, created empty if absent.
    fn day_mut(&mut self, day: i64) -> &mut DayAggregate {
        let at = match self.days.iter().rposition(|(d, _)| *d <= day) {
            Some(i) if self.days[i].0 == day => i,
            position => {
                let at = position.map_or(0, |i| i + 1);
                crate::doubling::insert(&mut self.days, at, (day, DayAggregate::default()));
                at
            }
        };
        &mut self.days[at].1
    }

    /// Folds `other` in; returns how many days were new here.
    pub fn merge(&mut self, other: LinkAggregate) -> usize {
        let mut added = 0;
        for (day, aggregate) in other.days {
            match self.days.binary_search_by_key(&day, |(d, _)| *d) {
                Ok(i) => self.days[i].1.merge(&aggregate),
                Err(i) => {
                    crate::doubling::insert(&mut self.days, i, (day, aggregate));
                    added += 1;
                }
            }
        }
        added
    }
}

/// Where a batch comes from: a contiguous run of positions `first..=last` of one
/// *source*, the unit that has exactly one writer at a time. A store keeps, per source,
/// the last position it applied, in the same transaction (or conditional write) as the
/// batch's increments, and applies a batch only past it (the rule, in full, is
/// [`crate::stats::StatsStore::apply`]'s). Sources:
///
/// - the in-process pipeline: one random source per process start (`local/<uuid>`), and
///   each flush is one position (`first == last`);
/// - a log consumer: one source per partition (`<topic>/<partition>`), positions are its
///   offsets. Partitions move between consumers on a rebalance; the new owner reads the
///   applied position ([`crate::stats::StatsStore::applied`]) and starts after it, so a
///   replay from its older committed offset counts once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// The source (at most 64 bytes).
    pub source: String,
    /// The first position the batch holds.
    pub first: u64,
    /// The last position it holds (`>= first`).
    pub last: u64,
}

impl BatchId {
    /// A batch of one position (`first == last`), as the in-process pipeline writes.
    pub fn single(source: impl Into<String>, position: u64) -> Self {
        Self {
            source: source.into(),
            first: position,
            last: position,
        }
    }

    /// What a store does with this batch when it has applied `applied` from its source.
    pub fn against(&self, applied: Option<u64>) -> Applies {
        match applied {
            None => Applies::Yes,
            Some(applied) if self.last <= applied => Applies::AlreadyApplied,
            Some(applied) if self.first > applied => Applies::Yes,
            Some(applied) => Applies::Overlaps { applied },
        }
    }
}

/// [`BatchId::against`]: the one decision every backend makes the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Past the applied position: apply it, and move the position to its `last`.
    Yes,
    /// At or before the applied position: a replay. Nothing is written (`Ok`).
    AlreadyApplied,
    /// Starts at or before the applied position but ends after it: part of it counted
    /// already, and an aggregate cannot be split. Refused; the writer must start after
    /// `applied`.
    Overlaps {
        /// The source's applied position.
        applied: u64,
    },
}

/// The statistics deltas of one batch, ready for the stats store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchAggregate {
    /// By short code.
    pub links: HashMap<ShortCode, LinkAggregate, RandomState>,
    /// Events aggregated.
    pub events: u64,
    /// Link-days held (the number of rows applying this batch writes).
    pub cells: usize,
    /// Replay protection; `None` applies unconditionally.
    pub id: Option<BatchId>,
}

impl BatchAggregate {
    /// Folds a later batch in: the result applies as both would have, in one write.
    pub fn merge(&mut self, other: BatchAggregate) {
        self.events += other.events;
        for (code, link) in other.links {
            match self.links.get_mut(code.as_str()) {
                Some(mine) => self.cells += mine.merge(link),
                None => {
                    self.cells += link.days.len();
                    self.links.insert(code, link);
                }
            }
        }
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// How much the aggregator may remember between batches.
#[derive(Debug, Clone, Copy)]
pub struct MemoLimits {
    /// Distinct user agents memoized before the memo is cleared.
    pub agents: usize,
    /// Distinct referrer URLs memoized before the memo is cleared.
    pub referrers: usize,
}

impl Default for MemoLimits {
    fn default() -> Self {
        Self {
            agents: crate::agent::MEMO_LIMIT,
            referrers: REFERRER_MEMO_LIMIT,
        }
    }
}

/// Turns events into [`BatchAggregate`]s. Keeps memos (user agents, referrer hosts)
/// across batches, so keep one per aggregating task.
#[derive(Default)]
pub struct Aggregator {
    agents: AgentClassifier,
    referrers: ReferrerHosts,
    labels: Labels,
    /// The memos above, by the address of a shared value (see [`ByAddress`]).
    recent_agents: ByAddress<Arc<Agent>>,
    recent_referrers: ByAddress<Arc<str>>,
    /// Reused by every call (cleared, capacity kept): a batch-sized map allocated per
    /// batch was a fresh mapping of pages, and its page faults, every time.
    tallies: HashMap<TallyKey, Tally, RandomState>,
}

impl Aggregator {
    /// A new aggregator with the default memo limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new aggregator whose memos hold at most `limits` entries each.
    pub fn with_limits(limits: MemoLimits) -> Self {
        Self {
            agents: AgentClassifier::with_memo_limit(limits.agents),
            referrers: ReferrerHosts {
                limit: limits.referrers,
                ..ReferrerHosts::default()
            },
            ..Self::default()
        }
    }

    /// Aggregates `events`. Order does not matter; events of any link and time may mix.
    ///
    /// Counters and visitor sketches are updated per event. The five top-N tables are
    /// not: clicks of one link and day that agree on every dimension (same user agent,
    /// referrer host and country: a link shared in one place gets many) are tallied
    /// first (the memoized user agent and referrer are keyed by address), and each
    /// distinct combination is added to the tables once. One small-key lookup per event
    /// replaces five string-keyed ones; a batch whose events all differ pays for both (`benches/aggregate.rs`
    /// measures the three cases).
    pub fn aggregate(&mut self, events: &[ClickEvent]) -> BatchAggregate {
        let mut batch = BatchAggregate::default();
        self.aggregate_into(&mut batch, events);
        batch
    }

    /// Like [`Aggregator::aggregate`], adding into an existing aggregate instead of a new
    /// one. The stats sink aggregates every batch straight into what is pending in
    /// memory: building a batch's own aggregate and merging it in cost as much again
    /// (`merge_long_tail` in benches/aggregate.rs), for a long tail where most clicks
    /// create a link-day.
    pub fn aggregate_into(&mut self, batch: &mut BatchAggregate, events: &[ClickEvent]) {
        batch.events += events.len() as u64;
        let mut tallies = std::mem::take(&mut self.tallies);
        // Sized for the worst case (no two events alike): growing it step by step
        // rehashes every key several times.
        tallies.reserve(events.len());
        // Room for every event's link up front, so the map does not resize during the
        // loop and a link's entry keeps its address: the tallies use it as the link's
        // identity.
        batch.links.reserve(events.len());
        for event in events {
            let agent = self.agent(event.user_agent.as_ref());
            let referrer = self.referrer(event.referrer.as_ref());
            let country = self.labels.country(event.country.as_deref());
            // Look up by `&str`, insert with an `Arc` clone of the code: no allocation
            // per event or per link.
            let link = match batch.links.get_mut(event.code.as_str()) {
                Some(link) => link,
                None => batch.links.entry(event.code.clone()).or_default(),
            };
            let link_address = std::ptr::from_ref(&*link) as usize;
            let day_number = event.at_ms.div_euclid(DAY_MS);
            let hour = (event.at_ms.rem_euclid(DAY_MS) / HOUR_MS) as u8;
            let days_before = link.days.len();
            let day = link.day_mut(day_number);
            day.count(hour, agent.is_bot);
            if !agent.is_bot {
                day.visitors.insert(event.visitor);
            }
            batch.cells += link.days.len() - days_before;
            let key = TallyKey {
                link: link_address,
                day: day_number,
                agent: Arc::as_ptr(&agent) as usize,
                referrer: address(&referrer),
                country: address(&country),
            };
            tallies
                .entry(key)
                .or_insert_with(|| Tally {
                    code: event.code.clone(),
                    agent,
                    referrer,
                    country,
                    clicks: 0,
                })
                .clicks += 1;
        }
        for (key, tally) in tallies.drain() {
            let Some(link) = batch.links.get_mut(tally.code.as_str()) else {
                continue; // unreachable: every tally's link was created above
            };
            let [referrers, countries, browsers, systems, devices] = &mut link.day_mut(key.day).top;
            let n = tally.clicks;
            referrers.add_shared(&tally.referrer, n);
            countries.add_shared(&tally.country, n);
            browsers.add_shared(&tally.agent.browser, n);
            systems.add_shared(&tally.agent.os, n);
            devices.add_shared(self.labels.device(tally.agent.device), n);
        }
        self.tallies = tallies;
    }

    /// The classified user agent; by address first when the value is shared.
    fn agent(&mut self, user_agent: Option<&Arc<str>>) -> Arc<Agent> {
        let Some(user_agent) = user_agent else {
            return self.agents.classify(None);
        };
        let agents = &mut self.agents;
        self.recent_agents
            .get_or_insert_with(user_agent, |text| agents.classify(Some(text)))
    }

    /// The referrer's host label; by address first when the value is shared.
    fn referrer(&mut self, referrer: Option<&Arc<str>>) -> Arc<str> {
        let Some(referrer) = referrer else {
            return self.referrers.host(None);
        };
        let referrers = &mut self.referrers;
        self.recent_referrers
            .get_or_insert_with(referrer, |text| referrers.host(Some(text)))
    }
}

/// The address of a string's bytes, as an identity (see [`TallyKey`]).
fn address(text: &str) -> usize {
    text.as_ptr() as usize
}

/// Slots of a [`ByAddress`] cache.
const BY_ADDRESS_SLOTS: usize = 256;

/// Memoized answers for shared strings, looked up by the string's address instead of
/// its text: events from the service share their user agent and referrer values (the
/// recorder interns them), so most lookups cost a pointer comparison, not hashing and
/// comparing a 100-byte string. Direct-mapped and bounded like the recorder's table; an
/// entry holds its key's `Arc`, so an address cannot be freed and reused for another
/// value while it is cached. Values that are not shared (events from a broker) miss here
/// and fall through to the text-keyed memo, which is correct, only slower.
struct ByAddress<V> {
    slots: Vec<Option<(Arc<str>, V)>>,
}

impl<V> Default for ByAddress<V> {
    fn default() -> Self {
        Self {
            slots: std::iter::repeat_with(|| None)
                .take(BY_ADDRESS_SLOTS)
                .collect(),
        }
    }
}

impl<V: Clone> ByAddress<V> {
    fn get_or_insert_with(&mut self, key: &Arc<str>, compute: impl FnOnce(&str) -> V) -> V {
        // Allocations are at least 8-byte aligned: the low bits carry no information.
        let slot = &mut self.slots[(address(key) >> 3) % BY_ADDRESS_SLOTS];
        match slot {
            Some((held, value)) if Arc::ptr_eq(held, key) => value.clone(),
            _ => {
                let value = compute(key);
                *slot = Some((key.clone(), value.clone()));
                value
            }
        }
    }
}

/// Interned labels of the country and device dimensions, so that top-N tables share
/// one allocation per label instead of allocating one per link-day (and compare by
/// pointer when batches merge). Bounded by construction: at most 26 × 26 countries
/// (the click contract admits two ASCII letters only) and five device classes.
struct Labels {
    countries: HashMap<String, Arc<str>, RandomState>,
    unknown_country: Arc<str>,
    devices: [Arc<str>; 5],
}

impl Default for Labels {
    fn default() -> Self {
        Self {
            countries: HashMap::default(),
            unknown_country: Arc::from("(unknown)"),
            devices: [
                DeviceType::Desktop,
                DeviceType::Mobile,
                DeviceType::Appliance,
                DeviceType::Bot,
                DeviceType::Unknown,
            ]
            .map(|d| Arc::from(d.as_str())),
        }
    }
}

impl Labels {
    fn country(&mut self, country: Option<&str>) -> Arc<str> {
        let Some(country) = country else {
            return self.unknown_country.clone();
        };
        if let Some(label) = self.countries.get(country) {
            return label.clone();
        }
        // Only hostile input gets here past 676 entries (events from a broker are
        // validated, but be safe): stop interning rather than grow.
        let label: Arc<str> = Arc::from(country);
        if self.countries.len() < 26 * 26 {
            self.countries.insert(country.to_owned(), label.clone());
        }
        label
    }

    fn device(&self, device: DeviceType) -> &Arc<str> {
        let index = match device {
            DeviceType::Desktop => 0,
            DeviceType::Mobile => 1,
            DeviceType::Appliance => 2,
            DeviceType::Bot => 3,
            DeviceType::Unknown => 4,
        };
        &self.devices[index]
    }
}

/// What the clicks of one tally share, as addresses: the link's entry in the pending
/// aggregate (which does not move during a call: see `aggregate_into`), and the
/// memoized agent, referrer host and country label. Equal addresses are equal values,
/// and since every [`Tally`] holds the `Arc`s, an address cannot be freed and reused for
/// another value while the batch is being aggregated. Plain integers, so the map is
/// reused across batches.
#[derive(PartialEq, Eq, Hash)]
struct TallyKey {
    link: usize,
    day: i64,
    agent: usize,
    referrer: usize,
    country: usize,
}

/// Clicks with the same [`TallyKey`], and the values its addresses stand for.
struct Tally {
    code: ShortCode,
    agent: Arc<Agent>,
    referrer: Arc<str>,
    country: Arc<str>,
    clicks: u64,
}

/// Referrer URL -> lower-cased host, memoized: parsing a URL costs more than everything
/// else in aggregation, and real traffic repeats a few referrers.
struct ReferrerHosts {
    /// Seeded fast hashing (see `topk`): keys are attacker-chosen referrers.
    memo: HashMap<String, Arc<str>, RandomState>,
    /// Entries in `memo` before it is cleared.
    limit: usize,
    /// The labels for "no referrer" and "not a URL", allocated once: clicks from apps,
    /// mail clients and typed URLs carry no referrer, so `(direct)` is a common answer.
    direct: Arc<str>,
    invalid: Arc<str>,
}

impl Default for ReferrerHosts {
    fn default() -> Self {
        Self {
            memo: HashMap::default(),
            limit: REFERRER_MEMO_LIMIT,
            direct: Arc::from("(direct)"),
            invalid: Arc::from("(invalid)"),
        }
    }
}

impl ReferrerHosts {
    /// The host of `referrer`; `(direct)` without one, `(invalid)` if it does not parse.
    fn host(&mut self, referrer: Option<&str>) -> Arc<str> {
        let Some(referrer) = referrer.filter(|r| !r.is_empty()) else {
            return self.direct.clone();
        };
        if let Some(host) = self.memo.get(referrer) {
            return host.clone();
        }
        let host = match url::Url::parse(referrer)
            .ok()
            .and_then(|url| Some(url.host_str()?.to_ascii_lowercase()))
        {
            Some(host) => Arc::from(host),
            None => self.invalid.clone(),
        };
        if self.memo.len() >= self.limit {
            self.memo.clear();
        }
        self.memo.insert(referrer.to_owned(), host.clone());
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_applies_past_its_sources_position_only() {
        let id = |first, last| BatchId {
            source: "clicks/0".into(),
            first,
            last,
        };
        assert_eq!(id(0, 9).against(None), Applies::Yes);
        assert_eq!(id(10, 19).against(Some(9)), Applies::Yes);
        assert_eq!(id(12, 19).against(Some(9)), Applies::Yes, "a gap is fine");
        assert_eq!(id(0, 9).against(Some(9)), Applies::AlreadyApplied);
        assert_eq!(id(3, 5).against(Some(9)), Applies::AlreadyApplied);
        assert_eq!(id(5, 14).against(Some(9)), Applies::Overlaps { applied: 9 });
        assert_eq!(id(9, 10).against(Some(9)), Applies::Overlaps { applied: 9 });
        assert_eq!(BatchId::single("local/x", 4).against(Some(3)), Applies::Yes);
    }
    use crate::click::CLICK_EVENT_VERSION;
    use uuid::Uuid;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
    const DAY: i64 = 20_409; // 2025-11-18

    /// Visitor ids are uniform hashes in production (keyed BLAKE3); mix test ids likewise.
    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn event(
        code: &str,
        at_ms: i64,
        ua: Option<&str>,
        referrer: Option<&str>,
        country: Option<&str>,
        visitor: u64,
    ) -> ClickEvent {
        ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: Uuid::now_v7(),
            code: crate::ShortCode::parse(code).expect("valid code"),
            at_ms,
            referrer: referrer.map(Into::into),
            user_agent: ua.map(Into::into),
            country: country.map(Into::into),
            visitor: mix(visitor),
        }
    }

    #[test]
    fn counts_split_humans_and_bots_per_link_hour_and_day() {
        let start = DAY * DAY_MS;
        let events = vec![
            event(
                "a",
                start + 10,
                Some(CHROME),
                Some("https://News.Example/x"),
                Some("DE"),
                1,
            ),
            event("a", start + 20, Some(IPHONE), None, Some("US"), 2),
            event("a", start + HOUR_MS + 5, Some(SLACK), None, None, 3),
            event("b", start + DAY_MS + 1, Some(CHROME), None, None, 1),
        ];
        let batch = Aggregator::new().aggregate(&events);
        assert_eq!(batch.events, 4);
        let a = &batch.links["a"];
        assert_eq!(batch.cells, 2, "two link-days");
        assert_eq!(
            a.total(),
            Counts {
                total: 3,
                human: 2,
                bot: 1
            }
        );
        let day = a.day(DAY).expect("day");
        assert_eq!(
            day.hours,
            vec![
                (
                    0,
                    Counts {
                        total: 2,
                        human: 2,
                        bot: 0
                    }
                ),
                (
                    1,
                    Counts {
                        total: 1,
                        human: 0,
                        bot: 1
                    }
                )
            ]
        );
        assert_eq!(day.counts, a.total());
        assert_eq!(day.visitors.estimate(), 2, "bots are not unique visitors");
        let [referrers, countries, browsers, _, devices] = &day.top;
        assert_eq!(
            referrers.top(5),
            vec![("(direct)".into(), 2), ("news.example".into(), 1)]
        );
        assert_eq!(
            countries.top(5),
            vec![("(unknown)".into(), 1), ("DE".into(), 1), ("US".into(), 1)]
        );
        assert_eq!(browsers.top(5).len(), 3);
        assert!(devices.top(5).contains(&("bot".into(), 1)));
        assert_eq!(batch.links["b"].day(DAY + 1).expect("day").counts.total, 1);
    }

    #[test]
    fn unique_visitors_count_distinct_humans_within_a_day() {
        let start = DAY * DAY_MS;
        let events: Vec<_> = (0..5_000u64)
            .map(|i| event("a", start + i as i64, Some(CHROME), None, None, i % 1_000))
            .collect();
        let batch = Aggregator::new().aggregate(&events);
        let estimate = batch.links["a"].day(DAY).expect("day").visitors.estimate();
        assert!((950..=1_050).contains(&estimate), "{estimate}");
    }

    #[test]
    fn merging_days_equals_aggregating_everything_at_once() {
        let start = DAY * DAY_MS;
        let events: Vec<_> = (0..100u64)
            .map(|i| {
                event(
                    "a",
                    start + i as i64,
                    Some(if i % 3 == 0 { SLACK } else { CHROME }),
                    Some("https://x.example/"),
                    Some("FR"),
                    i,
                )
            })
            .collect();
        let whole = Aggregator::new().aggregate(&events);
        let mut aggregator = Aggregator::new();
        let (first, second) = (
            aggregator.aggregate(&events[..40]),
            aggregator.aggregate(&events[40..]),
        );
        let mut merged = first.links["a"].day(DAY).expect("day").clone();
        merged.merge(second.links["a"].day(DAY).expect("day"));
        assert_eq!(&merged, whole.links["a"].day(DAY).expect("day"));
        let mut batches = first;
        batches.merge(second);
        assert_eq!(
            batches.links, whole.links,
            "merged batches equal one big batch"
        );
        assert_eq!((batches.events, batches.cells), (100, 1));
    }

    #[test]
    fn hostile_referrers_are_bucketed_not_trusted() {
        let mut aggregator = Aggregator::new();
        let long = format!("https://{}.example/", "a".repeat(400));
        let events = vec![
            event(
                "a",
                0,
                Some(CHROME),
                Some("<script>alert(1)</script>"),
                None,
                1,
            ),
            event("a", 1, Some(CHROME), Some("javascript:alert(1)"), None, 2),
            event("a", 2, Some(CHROME), Some(&long), None, 3),
            event("a", 3, Some(CHROME), Some(""), None, 4),
        ];
        let batch = aggregator.aggregate(&events);
        let referrers = batch.links["a"].day(0).expect("day").top[0].top(10);
        assert!(
            referrers.contains(&("(invalid)".into(), 2)),
            "{referrers:?}"
        );
        assert!(referrers.contains(&("(direct)".into(), 1)));
    }

    #[test]
    fn alike_clicks_are_tallied_per_link_day_and_combination() {
        let start = DAY * DAY_MS;
        // Interleaved: links, days, agents and countries alternate with different periods,
        // so equal combinations are never adjacent.
        let events: Vec<_> = (0..120u64)
            .map(|i| {
                event(
                    ["a", "b"][i as usize % 2],
                    start + DAY_MS * (i as i64 % 3 / 2),
                    Some([CHROME, SLACK, IPHONE][i as usize % 3]),
                    None,
                    Some(["DE", "US", "FR", "BR"][i as usize % 4]),
                    i,
                )
            })
            .collect();
        let batch = Aggregator::new().aggregate(&events);
        for code in ["a", "b"] {
            for day in [DAY, DAY + 1] {
                let expected: Vec<&ClickEvent> = events
                    .iter()
                    .filter(|e| e.code.as_str() == code && e.at_ms.div_euclid(DAY_MS) == day)
                    .collect();
                let aggregate = batch.links[code].day(day).expect("day");
                assert_eq!(aggregate.counts.total, expected.len() as u64);
                let [_, countries, browsers, _, _] = &aggregate.top;
                for country in ["DE", "US", "FR", "BR"] {
                    let n = expected
                        .iter()
                        .filter(|e| e.country.as_deref() == Some(country))
                        .count() as u64;
                    let counted = countries.entries().find(|(c, _)| *c == country);
                    assert_eq!(counted.map_or(0, |(_, n)| n), n, "{code} {day} {country}");
                }
                let browsers: u64 = browsers.entries().map(|(_, n)| n).sum();
                assert_eq!(browsers, expected.len() as u64);
            }
        }
    }

    #[test]
    fn a_batch_spanning_a_memo_reset_is_still_exact() {
        // More distinct user agents than the classifier remembers: its memo is cleared
        // mid-batch while tallies still refer to agents from before the reset.
        let n = crate::agent::MEMO_LIMIT + 500;
        let events: Vec<_> = (0..2 * n)
            .map(|i| {
                let agent = if i % 2 == 0 {
                    format!("Mozilla/5.0 Firefox/{}", i / 2)
                } else {
                    format!("curl/{}", i / 2)
                };
                event("a", 0, Some(&agent), None, None, i as u64)
            })
            .collect();
        let batch = Aggregator::new().aggregate(&events);
        let day = batch.links["a"].day(0).expect("day");
        assert_eq!(day.counts.total, 2 * n as u64);
        assert_eq!(
            day.counts.bot, n as u64,
            "every curl click is a bot, every Firefox one human"
        );
        let devices: u64 = day.top[Dimension::Device as usize]
            .entries()
            .map(|(_, n)| n)
            .sum();
        assert_eq!(devices, 2 * n as u64);
    }

    #[test]
    fn shared_and_separate_copies_of_the_same_values_aggregate_alike() {
        // The service shares header values between events (and the aggregator then
        // looks them up by address); a broker's events each carry their own copy. Both
        // must give the same statistics, including across many batches through one
        // aggregator, whose address caches then hold values of earlier batches.
        const AGENTS: [&str; 3] = [CHROME, "curl/8.5.0", "Mozilla/5.0 Firefox/121.0"];
        let shared_agents: Vec<Arc<str>> = AGENTS.iter().map(|&a| Arc::from(a)).collect();
        let referrer: Arc<str> = Arc::from("https://news.example/a");
        let batches: Vec<(Vec<ClickEvent>, Vec<ClickEvent>)> = (0..5)
            .map(|b| {
                let separate: Vec<_> = (0..300)
                    .map(|i| {
                        let code = format!("l{}", (b * 300 + i) % 40);
                        let ua = AGENTS[i % 3];
                        event(
                            &code,
                            i as i64 * 60_000,
                            Some(ua),
                            Some(&referrer),
                            None,
                            i as u64,
                        )
                    })
                    .collect();
                let shared = separate
                    .iter()
                    .enumerate()
                    .map(|(i, e)| ClickEvent {
                        user_agent: Some(shared_agents[i % 3].clone()),
                        referrer: Some(referrer.clone()),
                        ..e.clone()
                    })
                    .collect();
                (separate, shared)
            })
            .collect();
        let (mut by_copy, mut by_share) = (Aggregator::new(), Aggregator::new());
        let (mut copied, mut sharing) = (BatchAggregate::default(), BatchAggregate::default());
        for (separate, shared) in &batches {
            by_copy.aggregate_into(&mut copied, separate);
            by_share.aggregate_into(&mut sharing, shared);
        }
        assert_eq!(copied, sharing);
        assert_eq!(copied.events, 1_500);
        let human: u64 = copied
            .links
            .values()
            .map(|l| l.total().total - l.total().bot)
            .sum();
        assert_eq!(human, 1_000, "two of every three clicks are browsers");
    }
}
