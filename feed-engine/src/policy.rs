//! Who gets a post pushed into their precomputed timeline and who pulls it at read time: reader
//! activity, its classes, and the fanout policies. Pure: every decision takes `now` explicitly.

use serde::{Deserialize, Serialize};

const DAY_MS: f64 = 86_400_000.0;

/// A reader's activity as the engine tracks it: an exponentially decayed read rate and the time of
/// the last read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Activity {
    /// Last feed read, ms since the Unix epoch (0: never read).
    pub last_read_ms: u64,
    /// Feed reads per day, decayed with a one-day time constant.
    pub reads_per_day: f32,
}

impl Activity {
    /// The activity after one more read at `now_ms`.
    pub fn record_read(self, now_ms: u64) -> Activity {
        let rate = self.rate_at(now_ms);
        Activity {
            last_read_ms: now_ms.max(self.last_read_ms),
            reads_per_day: (rate + 1.0) as f32,
        }
    }

    /// The decayed read rate at `now_ms` (reads per day).
    pub fn rate_at(&self, now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.last_read_ms) as f64;
        self.reads_per_day as f64 * (-dt / DAY_MS).exp()
    }
}

/// The spec's activity classes, plus `Dormant` for readers who have not read for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityClass {
    /// Reads more than `high_reads_per_day`.
    High,
    /// Between the two thresholds.
    Medium,
    /// Reads fewer than `low_reads_per_day`.
    Low,
    /// Has not read for `dormant_after_ms` (or never).
    Dormant,
}

impl ActivityClass {
    /// A short label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityClass::High => "high",
            ActivityClass::Medium => "medium",
            ActivityClass::Low => "low",
            ActivityClass::Dormant => "dormant",
        }
    }
}

/// Thresholds of the activity classes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ActivityThresholds {
    /// At or above this many reads per day a reader is `High`.
    pub high_reads_per_day: f64,
    /// Below this many reads per day a reader is `Low`.
    pub low_reads_per_day: f64,
    /// Without a read for this long a reader is `Dormant`.
    pub dormant_after_ms: u64,
}

impl Default for ActivityThresholds {
    fn default() -> Self {
        // The traffic model's mean active user reads 100 times a day.
        ActivityThresholds {
            high_reads_per_day: 200.0,
            low_reads_per_day: 5.0,
            dormant_after_ms: 3 * 86_400_000,
        }
    }
}

impl ActivityThresholds {
    /// The class of `a` at `now_ms`. A reader who never read is `Dormant`.
    pub fn classify(&self, a: &Activity, now_ms: u64) -> ActivityClass {
        if a.last_read_ms == 0 || now_ms.saturating_sub(a.last_read_ms) >= self.dormant_after_ms {
            return ActivityClass::Dormant;
        }
        let r = a.rate_at(now_ms);
        if r >= self.high_reads_per_day {
            ActivityClass::High
        } else if r < self.low_reads_per_day {
            ActivityClass::Low
        } else {
            ActivityClass::Medium
        }
    }
}

/// The named fanout policies. The policy decides a reader's *mode*: whether fanout pushes into
/// their timeline or they pull at read time. Posts of authors over the celebrity threshold are
/// never pushed, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The product spec's rule: high activity → pull; medium, low (and dormant) → push.
    SpecRule,
    /// Minimise total work: push to readers whose reads would cost more to pull than their
    /// deliveries cost to write; dormant readers are not pushed to and their timeline is
    /// rebuilt when they return.
    #[default]
    CostBased,
    /// Push to every follower (fanout-on-write only).
    AlwaysPush,
    /// Push to nobody (fanout-on-read only).
    AlwaysPull,
}

impl PolicyKind {
    /// A short label for metrics and config.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::SpecRule => "spec-rule",
            PolicyKind::CostBased => "cost-based",
            PolicyKind::AlwaysPush => "always-push",
            PolicyKind::AlwaysPull => "always-pull",
        }
    }
}

/// How a reader's feed is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReaderMode {
    /// Fanout writes into the reader's timeline.
    Push,
    /// The reader's feed is merged from followees' outboxes at read time.
    Pull,
}

/// The policy with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct FanoutPolicy {
    /// Which rule decides.
    pub kind: PolicyKind,
    /// Activity class thresholds.
    pub thresholds: ActivityThresholds,
    /// Cost of pulling one followee's outbox head at read time, in units of one timeline write.
    pub pull_cost_per_followee: f64,
    /// Expected posts per day of one followee (the write side of the cost model).
    pub posts_per_followee_per_day: f64,
    /// Readers following at least this many accounts are served by pull-merge under the
    /// adaptive policies (`spec-rule`, `cost-based`): their followees post more in the pull window
    /// than a capped timeline holds, and a merge of every followee's recent posts misses none
    /// (Bluesky's "lossy timelines" start at 2,000 follows).
    pub heavy_following: u64,
}

impl Default for FanoutPolicy {
    fn default() -> Self {
        FanoutPolicy {
            kind: PolicyKind::default(),
            thresholds: ActivityThresholds::default(),
            // Measured order of magnitude: a warm outbox-head read costs about as much as two
            // WAL-batched timeline writes.
            pull_cost_per_followee: 2.0,
            // The traffic model: 500 M posts a day over 50 M users.
            posts_per_followee_per_day: 10.0,
            heavy_following: 2000,
        }
    }
}

/// A decision with its reason, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Push or pull.
    pub mode: ReaderMode,
    /// Why, as a metrics label.
    pub reason: &'static str,
}

impl FanoutPolicy {
    /// The mode of a reader with activity `a` who follows `following` accounts, at `now_ms`.
    pub fn decide(&self, a: &Activity, following: u64, now_ms: u64) -> Decision {
        let class = self.thresholds.classify(a, now_ms);
        let d = |mode, reason| Decision { mode, reason };
        match self.kind {
            PolicyKind::AlwaysPush => d(ReaderMode::Push, "always-push"),
            PolicyKind::AlwaysPull => d(ReaderMode::Pull, "always-pull"),
            PolicyKind::SpecRule | PolicyKind::CostBased if following >= self.heavy_following => {
                d(ReaderMode::Pull, "heavy-following")
            }
            PolicyKind::SpecRule => match class {
                ActivityClass::High => d(ReaderMode::Pull, "spec-high"),
                _ => d(ReaderMode::Push, "spec-low-medium"),
            },
            PolicyKind::CostBased => {
                if class == ActivityClass::Dormant {
                    return d(ReaderMode::Pull, "cost-dormant");
                }
                // Per day: pulling costs reads × followees × c_pull, pushing costs the followees'
                // posts × 1 write each. Push when it is the cheaper of the two.
                let f = following.max(1) as f64;
                let pull = a.rate_at(now_ms) * f * self.pull_cost_per_followee;
                let push = f * self.posts_per_followee_per_day;
                if pull >= push {
                    d(ReaderMode::Push, "cost-push-cheaper")
                } else {
                    d(ReaderMode::Pull, "cost-pull-cheaper")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const H: u64 = 3_600_000;

    fn reader(reads: u32, spread_ms: u64) -> Activity {
        let mut a = Activity::default();
        for i in 0..reads {
            a = a.record_read(NOW - spread_ms + spread_ms * i as u64 / reads.max(1) as u64);
        }
        a
    }

    #[test]
    fn classes_follow_read_rates() {
        let t = ActivityThresholds::default();
        assert_eq!(t.classify(&Activity::default(), NOW), ActivityClass::Dormant);
        assert_eq!(t.classify(&reader(400, 24 * H), NOW), ActivityClass::High);
        assert_eq!(t.classify(&reader(40, 24 * H), NOW), ActivityClass::Medium);
        assert_eq!(t.classify(&reader(2, 24 * H), NOW), ActivityClass::Low);
        let seen_long_ago = reader(400, 24 * H);
        assert_eq!(t.classify(&seen_long_ago, NOW + 4 * 24 * H), ActivityClass::Dormant);
    }

    #[test]
    fn rate_decays_with_time() {
        let a = reader(100, H);
        assert!(a.rate_at(NOW + 24 * H) < a.rate_at(NOW) * 0.4);
    }

    #[test]
    fn spec_rule_pulls_for_high_and_pushes_otherwise() {
        let p = FanoutPolicy {
            kind: PolicyKind::SpecRule,
            ..Default::default()
        };
        assert_eq!(p.decide(&reader(400, 24 * H), 100, NOW).mode, ReaderMode::Pull);
        assert_eq!(p.decide(&reader(40, 24 * H), 100, NOW).mode, ReaderMode::Push);
        assert_eq!(p.decide(&reader(1, 24 * H), 100, NOW).mode, ReaderMode::Push);
    }

    #[test]
    fn cost_based_pushes_to_readers_who_read_more_than_they_receive() {
        let p = FanoutPolicy::default();
        assert_eq!(p.decide(&reader(40, 24 * H), 100, NOW).mode, ReaderMode::Push);
        assert_eq!(p.decide(&reader(400, 24 * H), 100, NOW).mode, ReaderMode::Push);
        // Reads twice a day: pulling is cheaper than ten deliveries per followee.
        assert_eq!(p.decide(&reader(2, 24 * H), 100, NOW).mode, ReaderMode::Pull);
        let d = p.decide(&Activity::default(), 100, NOW);
        assert_eq!((d.mode, d.reason), (ReaderMode::Pull, "cost-dormant"));
    }

    #[test]
    fn heavy_followers_are_pulled_by_the_adaptive_policies() {
        for kind in [PolicyKind::CostBased, PolicyKind::SpecRule] {
            let p = FanoutPolicy {
                kind,
                ..Default::default()
            };
            // A medium reader is pushed to at 100 follows and pulled for at 2,000.
            assert_eq!(p.decide(&reader(40, 24 * H), 100, NOW).mode, ReaderMode::Push);
            let d = p.decide(&reader(40, 24 * H), 2000, NOW);
            assert_eq!((d.mode, d.reason), (ReaderMode::Pull, "heavy-following"));
        }
        let push = FanoutPolicy {
            kind: PolicyKind::AlwaysPush,
            ..Default::default()
        };
        assert_eq!(push.decide(&reader(40, 24 * H), 5000, NOW).mode, ReaderMode::Push);
    }

    #[test]
    fn fixed_policies_ignore_activity() {
        let push = FanoutPolicy {
            kind: PolicyKind::AlwaysPush,
            ..Default::default()
        };
        let pull = FanoutPolicy {
            kind: PolicyKind::AlwaysPull,
            ..Default::default()
        };
        assert_eq!(push.decide(&Activity::default(), 1, NOW).mode, ReaderMode::Push);
        assert_eq!(pull.decide(&reader(1000, H), 1, NOW).mode, ReaderMode::Pull);
    }
}
