//! The rank of a post: one number, fixed at publish time, that orders every feed.
//!
//! It is the "hot" trick: `score = age_units + log2(weight)`, where `age_units` grows by one every
//! `recency_halving_ms` of creation time. A post created one halving period later needs half the
//! weight to tie, so newer posts rise and older heavy posts sink as time passes *without any stored
//! entry being rewritten*: the order of two stored ranks never changes.

use crate::model::ContentType;

/// Milliseconds since the Unix epoch of 2024-01-01T00:00:00Z, the origin of ranks and post ids.
pub const FEEDLINE_EPOCH_MS: u64 = 1_704_067_200_000;

/// Fixed-point scale of a stored rank: 32 fractional bits.
const SCALE: f64 = (1u64 << 32) as f64;

/// The ranking factors' weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankParams {
    /// Creation-time distance that is worth a factor of two in weight.
    pub recency_halving_ms: u64,
}

impl Default for RankParams {
    fn default() -> Self {
        RankParams {
            recency_halving_ms: 12 * 3600 * 1000,
        }
    }
}

/// The spec's author reach: `min(log10(followers + 1), 5)`.
pub fn author_reach(followers: u64) -> f64 {
    ((followers as f64) + 1.0).log10().min(5.0)
}

/// The spec's content boost: text 1.0, image 1.2, video 1.5.
pub fn content_boost(ct: ContentType) -> f64 {
    match ct {
        ContentType::Text => 1.0,
        ContentType::Image => 1.2,
        ContentType::Video => 1.5,
    }
}

/// A post's weight: `boost × (1 + reach)`. The `1 +` keeps an author with no followers at a
/// finite, positive weight (reach alone would be 0 and its logarithm −∞).
pub fn weight(followers: u64, ct: ContentType) -> f64 {
    content_boost(ct) * (1.0 + author_reach(followers))
}

/// The stored rank of a post created at `created_at_ms` by an author with `followers`
/// followers: a fixed-point `score` that sorts as an unsigned integer.
pub fn rank(params: RankParams, created_at_ms: u64, followers: u64, ct: ContentType) -> u64 {
    let age_units = created_at_ms.saturating_sub(FEEDLINE_EPOCH_MS) as f64 / params.recency_halving_ms.max(1) as f64;
    let score = age_units + weight(followers, ct).log2();
    // score ≥ 0 (weight ≥ 1); 2^32 fractional bits leave room for ~4e9 halving periods.
    (score * SCALE) as u64
}

/// `rank` raised by `units` recency halving periods (a trending post's place in the discovery
/// pool); saturates instead of wrapping.
pub fn raised(rank: u64, units: f64) -> u64 {
    rank.saturating_add((units.max(0.0) * SCALE) as u64)
}

/// The score a rank stands for (for display and debugging).
pub fn score(rank: u64) -> f64 {
    rank as f64 / SCALE
}

/// The rank a [`score`] stands for: exact for every rank below 2^53 (any post's for millions
/// of years), so a client holding a post's score can position a feed cursor at it.
pub fn rank_of(score: f64) -> u64 {
    (score * SCALE).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_gives_back_its_rank() {
        for r in [0, 1, 12_345, 1 << 40, (1 << 52) + 7] {
            assert_eq!(rank_of(score(r)), r);
        }
    }

    const H: u64 = 3600 * 1000;

    #[test]
    fn reach_follows_the_spec() {
        assert_eq!(author_reach(0), 0.0);
        assert!((author_reach(9) - 1.0).abs() < 1e-12);
        assert!((author_reach(999) - 3.0).abs() < 1e-12);
        assert_eq!(author_reach(10_000_000), 5.0, "reach is capped at 5");
    }

    #[test]
    fn boost_orders_content_types_at_equal_time() {
        let p = RankParams::default();
        let t = FEEDLINE_EPOCH_MS + 1000 * H;
        let text = rank(p, t, 100, ContentType::Text);
        let image = rank(p, t, 100, ContentType::Image);
        let video = rank(p, t, 100, ContentType::Video);
        assert!(text < image && image < video);
    }

    #[test]
    fn one_halving_period_is_worth_double_weight() {
        let p = RankParams {
            recency_halving_ms: 12 * H,
        };
        let t = FEEDLINE_EPOCH_MS + 5000 * H;
        // weight(0 followers, text) = 1; weight(9 followers, text) = 2.
        let older_heavy = rank(p, t, 9, ContentType::Text);
        let newer_light = rank(p, t + 12 * H, 0, ContentType::Text);
        let diff = older_heavy.abs_diff(newer_light);
        assert!(diff < 16, "expected a tie, got ranks {older_heavy} vs {newer_light}");
    }

    #[test]
    fn newer_posts_rise_and_heavy_posts_sink_over_days() {
        let p = RankParams::default();
        let t = FEEDLINE_EPOCH_MS + 10_000 * H;
        let celebrity_video = rank(p, t, 10_000_000, ContentType::Video);
        // Max weight 1.5 × 6 = 9 → log2 9 ≈ 3.17 halvings ≈ 38 h at 12 h per halving.
        let friend_text_1d = rank(p, t + 24 * H, 0, ContentType::Text);
        let friend_text_2d = rank(p, t + 48 * H, 0, ContentType::Text);
        assert!(
            celebrity_video > friend_text_1d,
            "a day later a light post still ranks below"
        );
        assert!(celebrity_video < friend_text_2d, "two days later it ranks above");
    }

    #[test]
    fn rank_is_monotonic_in_time_for_fixed_weight() {
        let p = RankParams::default();
        let mut last = 0;
        for i in 0..1000u64 {
            let r = rank(p, FEEDLINE_EPOCH_MS + i * 997, 42, ContentType::Image);
            assert!(r >= last);
            last = r;
        }
        assert!(score(last) > 0.0);
    }
}
