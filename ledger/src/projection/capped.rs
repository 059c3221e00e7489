//! The cumulative, capped rate of DOMAIN.md, with no rounding drift: keep the basis R and the
//! amount granted so far S; after each change of R the target is
//! `T = min(round_half_up(R x rate, 2), cap)`, the line is `T - S`, then `S = T`.
//! When a policy changes rate, each version's basis is kept apart (its own regime) and the
//! target sums the regimes' rounded amounts, so neither version's rounding drifts either.
//!
//! And the split of a cumulative amount between completers by largest remainder at the fen,
//! ties to the completer listed first: per-completer lines are differences of cumulative
//! splits, so they always add up to the achievement's line.

use std::collections::BTreeMap;

use crate::money::{Money, Rate};

/// A capped cumulative amount for one subject and cap period (an achievement's lifetime, a
/// center's year).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accumulator {
    /// The basis, by policy version (regime), never negative.
    basis: BTreeMap<u32, (Rate, Money)>,
    /// What has been granted so far (S).
    granted: Money,
}

impl Accumulator {
    pub fn basis(&self) -> Money {
        self.basis.values().map(|(_, m)| *m).sum()
    }

    pub fn granted(&self) -> Money {
        self.granted
    }

    /// Changes the basis of `version` (at `rate`) by `delta` and returns the line `T - S`.
    pub fn apply(&mut self, version: u32, rate: Rate, delta: Money, cap: Money) -> Money {
        assert!(cap >= Money::ZERO, "a cap is never negative");
        let entry = self.basis.entry(version).or_insert((rate, Money::ZERO));
        assert_eq!(entry.0, rate, "a policy version has one rate");
        entry.1 += delta;
        assert!(entry.1 >= Money::ZERO, "basis of version {version} went negative: a reversal exceeded what counted");
        let uncapped: Money = self.basis.values().map(|(rate, basis)| basis.times_rate_half_up(*rate)).sum();
        let target = uncapped.min(cap);
        let line = target - self.granted;
        self.granted = target;
        assert!(self.granted >= Money::ZERO && self.granted <= cap, "granted {} outside 0..={cap}", self.granted);
        line
    }
}

/// Splits `total` (fen) by `shares` (basis points summing to 10000) by largest remainder:
/// everyone gets the floor of their exact share, and the fen left over go one each to the
/// largest fractional remainders, ties to the earlier completer.
pub fn split_largest_remainder(total: Money, shares: &[u32]) -> Vec<Money> {
    assert_eq!(shares.iter().sum::<u32>(), 10_000, "shares sum to 100.00 %");
    assert!(total >= Money::ZERO, "only non-negative amounts are split");
    let total_fen = i128::from(total.fen());
    let exact = |bp: u32| {
        let product = total_fen * i128::from(bp);
        (product / 10_000, product % 10_000)
    };
    let mut parts: Vec<Money> = shares
        .iter()
        .map(|&bp| Money::from_fen(i64::try_from(exact(bp).0).expect("a part is at most the total")))
        .collect();
    let floors: i128 = parts.iter().map(|p| i128::from(p.fen())).sum();
    let leftover = usize::try_from(total_fen - floors).expect("leftover fen is fewer than the completers");
    assert!(leftover < shares.len().max(1), "largest remainder leaves fewer fen than completers");
    if leftover > 0 {
        // Completer i gets a fen when fewer than `leftover` completers come before it in the
        // order "larger remainder first, then listed earlier". (The fold splits on every
        // counted line: this allocates only the parts and the remainders.)
        let remainders: Vec<i128> = shares.iter().map(|&bp| exact(bp).1).collect();
        for (i, part) in parts.iter_mut().enumerate() {
            let r = remainders[i];
            let ahead = remainders.iter().enumerate().filter(|&(j, &rj)| rj > r || (rj == r && j < i)).count();
            if ahead < leftover {
                *part += Money::from_fen(1);
            }
        }
    }
    assert_eq!(parts.iter().copied().sum::<Money>(), total, "the split adds up to the total");
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn yuan(y: i64) -> Money {
        Money::from_yuan(y)
    }

    #[test]
    fn the_line_is_the_change_of_the_capped_rounded_target() {
        let mut acc = Accumulator::default();
        let five = Rate::percent(5);
        let cap = yuan(1_000_000);
        // 0.10 x 5 % = 0.005 -> 0.01; then +0.10 -> 0.20 x 5 % = 0.01: no new fen.
        assert_eq!(acc.apply(1, five, Money::from_fen(10), cap), Money::from_fen(1));
        assert_eq!(acc.apply(1, five, Money::from_fen(10), cap), Money::ZERO);
        assert_eq!(acc.apply(1, five, Money::from_fen(10), cap), Money::from_fen(1), "0.30 x 5 % = 0.015 -> 0.02");
        assert_eq!(acc.granted(), Money::from_fen(2));
    }

    #[test]
    fn a_payment_crossing_the_cap_earns_only_up_to_the_cap() {
        let mut acc = Accumulator::default();
        let (five, cap) = (Rate::percent(5), yuan(1_000_000));
        assert_eq!(acc.apply(1, five, yuan(19_000_000), cap), yuan(950_000));
        assert_eq!(acc.apply(1, five, yuan(3_000_000), cap), yuan(50_000), "crossing: 1,100,000 capped to 1,000,000");
        assert_eq!(acc.apply(1, five, yuan(1), cap), Money::ZERO, "after the cap");
        // A reversal claws back only when 5 % of the net falls below the cap.
        assert_eq!(acc.apply(1, five, -yuan(2_000_000), cap), Money::ZERO, "20,000,001 x 5 % is still above the cap");
        assert_eq!(acc.apply(1, five, -yuan(1_000_001), cap), -yuan(50_000), "19,000,000 x 5 % = 950,000: 50,000 back");
    }

    #[test]
    fn largest_remainder_gives_leftover_fen_to_the_largest_remainders_then_the_first_listed() {
        let shares = [3333, 3333, 3334];
        // 1.00 yuan: exact 33.33, 33.33, 33.34 -> no leftover.
        assert_eq!(split_largest_remainder(Money::from_fen(100), &shares), [33, 33, 34].map(Money::from_fen));
        // 0.01 yuan: exact 0.3333, 0.3333, 0.3334: the fen goes to the largest remainder (third).
        assert_eq!(split_largest_remainder(Money::from_fen(1), &shares), [0, 0, 1].map(Money::from_fen));
        // Equal shares tie: the first listed wins.
        assert_eq!(split_largest_remainder(Money::from_fen(1), &[5000, 5000]), [1, 0].map(Money::from_fen));
        assert_eq!(split_largest_remainder(Money::from_fen(2), &[3334, 3333, 3333]), [1, 1, 0].map(Money::from_fen));
    }

    proptest! {
        #[test]
        fn the_granted_amount_never_exceeds_the_cap_and_lines_sum_to_it(
            deltas in proptest::collection::vec(1i64..5_000_000_000, 1..40),
            reverse_every in 2usize..6,
            cap_yuan in 1i64..2_000_000,
        ) {
            let mut acc = Accumulator::default();
            let cap = yuan(cap_yuan);
            let mut lines = Money::ZERO;
            let mut counted: Vec<Money> = Vec::new();
            for (i, d) in deltas.iter().enumerate() {
                let delta = if i % reverse_every == reverse_every - 1 && !counted.is_empty() {
                    -counted.pop().unwrap()
                } else {
                    counted.push(Money::from_fen(*d));
                    Money::from_fen(*d)
                };
                lines += acc.apply(1, Rate::percent(5), delta, cap);
                prop_assert!(acc.granted() <= cap);
                prop_assert_eq!(lines, acc.granted());
                prop_assert_eq!(acc.granted(), acc.basis().times_rate_half_up(Rate::percent(5)).min(cap));
            }
        }

        #[test]
        fn cumulative_splits_add_up_and_each_part_is_within_a_fen_of_exact(
            total in 0i64..100_000_000_000,
            raw in proptest::collection::vec(1u32..5000, 1..8),
        ) {
            // Scale arbitrary positive weights to basis points summing to exactly 10000.
            let sum: u32 = raw.iter().sum();
            let mut shares: Vec<u32> = raw.iter().map(|w| (w * 10_000 / sum).max(1)).collect();
            let diff = 10_000i64 - shares.iter().map(|&s| i64::from(s)).sum::<i64>();
            let last = shares.len() - 1;
            shares[last] = u32::try_from(i64::from(shares[last]) + diff).unwrap_or(1).max(1);
            prop_assume!(shares.iter().sum::<u32>() == 10_000);
            let parts = split_largest_remainder(Money::from_fen(total), &shares);
            prop_assert_eq!(parts.iter().copied().sum::<Money>(), Money::from_fen(total));
            for (part, bp) in parts.iter().zip(&shares) {
                let exact = i128::from(total) * i128::from(*bp);
                let diff = i128::from(part.fen()) * 10_000 - exact;
                prop_assert!(diff > -10_000 && diff < 10_000, "part {} off by a fen or more", part);
            }
        }
    }
}
