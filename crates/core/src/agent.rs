//! User-agent classification: browser, OS, device type, and bot or human.
//!
//! Parsing is delegated to maintained crates rather than hand-written regexes: `woothee`
//! (browser, OS, device category) and `isbot` (the community-maintained pattern list of
//! crawlers and link-preview fetchers: Slackbot, Twitterbot, facebookexternalhit,
//! Discordbot, Mastodon, ...). A click is a bot if either says so, or if it has no user
//! agent at all (browsers always send one).
//!
//! The bot check runs one large regex, which costs microseconds per string. Real traffic
//! repeats a small set of user agents, so results are memoized per distinct string; the
//! memo is cleared when it reaches [`MEMO_LIMIT`] entries, which bounds its memory.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::sync::Arc;

/// Distinct user agents remembered before the memo is cleared (the default).
pub const MEMO_LIMIT: usize = 10_000;

/// The device class of a click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// Desktop or laptop browser.
    Desktop,
    /// Phone (smartphone or feature phone).
    Mobile,
    /// Game console, TV, e-reader and other appliances.
    Appliance,
    /// A crawler, preview fetcher or script.
    Bot,
    /// Could not tell.
    Unknown,
}

impl DeviceType {
    /// The label used in statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Appliance => "appliance",
            Self::Bot => "bot",
            Self::Unknown => "unknown",
        }
    }
}

/// What a user agent says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Crawler, preview fetcher, script, or missing user agent.
    pub is_bot: bool,
    /// Browser family (`Chrome`, `Firefox`, ...) or `unknown`.
    pub browser: Arc<str>,
    /// OS family (`Windows 10`, `iPhone`, `Android`, ...) or `unknown`.
    pub os: Arc<str>,
    /// Device class.
    pub device: DeviceType,
}

/// Classifies user agents. Not `Sync` by design: one per aggregating task.
pub struct AgentClassifier {
    parser: woothee::parser::Parser,
    bots: isbot::Bots,
    /// Seeded fast hashing (see `topk`): keys are attacker-chosen user agents.
    memo: HashMap<String, Arc<Agent>, RandomState>,
    /// Entries in `memo` before it is cleared.
    limit: usize,
    missing: Arc<Agent>,
}

impl Default for AgentClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentClassifier {
    /// A classifier with the crates' default tables.
    pub fn new() -> Self {
        Self::with_memo_limit(MEMO_LIMIT)
    }

    /// Like [`AgentClassifier::new`], remembering at most `limit` user agents.
    pub fn with_memo_limit(limit: usize) -> Self {
        let unknown: Arc<str> = Arc::from("unknown");
        Self {
            parser: woothee::parser::Parser::new(),
            bots: isbot::Bots::default(),
            memo: HashMap::default(),
            limit: limit.max(1),
            missing: Arc::new(Agent {
                is_bot: true,
                browser: unknown.clone(),
                os: unknown,
                device: DeviceType::Bot,
            }),
        }
    }

    /// Classifies one user agent (`None`: the header was absent). The same string gets
    /// the same `Arc` while it stays memoized, so callers may use the pointer as a cheap
    /// identity (holding the `Arc` keeps that identity from being reused).
    pub fn classify(&mut self, user_agent: Option<&str>) -> Arc<Agent> {
        let Some(user_agent) = user_agent.filter(|ua| !ua.trim().is_empty()) else {
            return self.missing.clone();
        };
        if let Some(agent) = self.memo.get(user_agent) {
            return agent.clone();
        }
        let agent = Arc::new(self.parse(user_agent));
        if self.memo.len() >= self.limit {
            self.memo.clear();
        }
        self.memo.insert(user_agent.to_owned(), agent.clone());
        agent
    }

    fn parse(&self, user_agent: &str) -> Agent {
        let parsed = self.parser.parse(user_agent);
        let category = parsed.as_ref().map_or("UNKNOWN", |p| p.category);
        let is_bot = category == "crawler" || self.bots.is_bot(user_agent);
        let device = match category {
            _ if is_bot => DeviceType::Bot,
            "pc" => DeviceType::Desktop,
            "smartphone" | "mobilephone" => DeviceType::Mobile,
            "appliance" => DeviceType::Appliance,
            _ => DeviceType::Unknown,
        };
        let label = |value: Option<&str>| -> Arc<str> {
            match value {
                Some(v) if !v.is_empty() && v != "UNKNOWN" => Arc::from(v),
                _ => Arc::from("unknown"),
            }
        };
        Agent {
            is_bot,
            browser: label(parsed.as_ref().map(|p| p.name)),
            os: label(parsed.as_ref().map(|p| p.os)),
            device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

    #[test]
    fn browsers_are_humans_with_browser_os_and_device() {
        let mut classifier = AgentClassifier::new();
        let chrome = classifier.classify(Some(CHROME_WINDOWS));
        assert!(!chrome.is_bot);
        assert_eq!(&*chrome.browser, "Chrome");
        assert_eq!(chrome.device, DeviceType::Desktop);
        let safari = classifier.classify(Some(SAFARI_IPHONE));
        assert!(!safari.is_bot);
        assert_eq!(&*safari.browser, "Safari");
        assert_eq!(&*safari.os, "iPhone");
        assert_eq!(safari.device, DeviceType::Mobile);
        let firefox = classifier.classify(Some(FIREFOX_LINUX));
        assert!(!firefox.is_bot);
        assert_eq!(&*firefox.browser, "Firefox");
    }

    #[test]
    fn crawlers_and_link_preview_fetchers_are_bots() {
        let mut classifier = AgentClassifier::new();
        for bot in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Slack-ImgProxy (+https://api.slack.com/robots)",
            "Twitterbot/1.0",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "Mastodon/4.2.1 (http.rb/5.1.1; +https://mastodon.social/)",
            "TelegramBot (like TwitterBot)",
            "WhatsApp/2.23.20.0 A",
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "curl/8.5.0",
            "python-requests/2.31.0",
        ] {
            let agent = classifier.classify(Some(bot));
            assert!(agent.is_bot, "{bot} classified as human");
            assert_eq!(agent.device, DeviceType::Bot);
        }
    }

    #[test]
    fn a_missing_user_agent_is_a_bot() {
        let mut classifier = AgentClassifier::new();
        assert!(classifier.classify(None).is_bot);
        assert!(classifier.classify(Some("   ")).is_bot);
    }

    #[test]
    fn hostile_user_agents_do_not_crash_and_the_memo_stays_bounded() {
        let mut classifier = AgentClassifier::new();
        for i in 0..(MEMO_LIMIT + 10) {
            classifier.classify(Some(&format!("<script>alert({i})</script>\u{fffd}\u{0}")));
        }
        assert!(classifier.memo.len() <= MEMO_LIMIT);
        classifier.classify(Some(&"A".repeat(10_000)));
    }
}
