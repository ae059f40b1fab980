//! The order a plan's cases run in: every case once per repetition, in plan order, except the
//! *blocks* — adjacent cases with more than one round each — which run round by round, the
//! block's cases interleaved (forward in even rounds, backward in odd ones), after one unmeasured
//! warm-up round of the whole block in the first repetition.
//!
//! Why: a ratio is the median of per-repetition ratios, pairing the i-th sample of its numerator
//! with the i-th of its denominator. For `streams10k_vs_1` three pairs a run (quick mode) were
//! too few: one roll, checkpoint or burst of another process's I/O in one window moved the median
//! by 0.09 between runs in a calm hour. Running the three many-streams cases (and their
//! one-stream denominator) as one block of several rounds gives nine pairs per quick run, each
//! pair measured seconds apart; alternating the direction of the rounds puts each side first as
//! often as last (a drift in the machine's state over the block weighs on both); the warm-up
//! round absorbs the first contact with the disk state the cases before the block left (dirty
//! pages of the raw baselines, a cold page cache for the engine's files).

use super::Case;

/// One step of a run: case `case` (an index into the plan's cases) in repetition `rep`;
/// `measured` is false for a warm-up run, whose sample is discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Repetition, from 0.
    pub rep: usize,
    /// Index of the case in the plan.
    pub case: usize,
    /// The sample counts (false: warm-up).
    pub measured: bool,
}

/// The steps of a run of `cases` with `reps` repetitions (see the module's comment).
pub fn schedule(cases: &[Case], reps: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    // Rounds run so far per block (keyed by its first case): the direction alternates across
    // repetitions too.
    let mut turns = std::collections::HashMap::<usize, usize>::new();
    for rep in 0..reps {
        let mut i = 0;
        while i < cases.len() {
            let rounds = cases.get(i).map_or(1, |c| c.rounds);
            if rounds <= 1 {
                steps.push(Step {
                    rep,
                    case: i,
                    measured: true,
                });
                i += 1;
                continue;
            }
            // The block: the adjacent cases with the same number of rounds.
            let end = (i..cases.len())
                .find(|&j| cases.get(j).map_or(1, |c| c.rounds) != rounds)
                .unwrap_or(cases.len());
            let warmup = usize::from(rep == 0);
            for round in 0..rounds + warmup {
                let measured = round >= warmup;
                let turn = turns.entry(i).or_insert(0);
                let forward = (*turn).is_multiple_of(2);
                *turn += 1;
                let order: Vec<usize> = if forward {
                    (i..end).collect()
                } else {
                    (i..end).rev().collect()
                };
                steps.extend(order.into_iter().map(|case| Step {
                    rep,
                    case,
                    measured,
                }));
            }
            i = end;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Work;

    fn case(rounds: usize, batch: usize) -> Case {
        Case {
            rounds,
            ..Case::new(
                "g",
                Work::RawSync {
                    record_bytes: 1,
                    batch,
                },
            )
        }
    }

    fn order(steps: &[Step]) -> Vec<(usize, bool)> {
        steps.iter().map(|s| (s.case, s.measured)).collect()
    }

    #[test]
    fn cases_without_rounds_run_once_per_repetition_in_plan_order() {
        let cases = [case(1, 1), case(1, 2), case(1, 3)];
        let steps = schedule(&cases, 2);
        let want: Vec<(usize, bool)> = [0, 1, 2, 0, 1, 2].iter().map(|&c| (c, true)).collect();
        assert_eq!(order(&steps), want);
        assert_eq!(steps.iter().filter(|s| s.rep == 1).count(), 3);
    }

    /// A block of two cases with 3 rounds between two ordinary cases: a warm-up round in the
    /// first repetition only, then the rounds alternating direction; every case of the block
    /// gets `reps × rounds` measured samples, so numerator and denominator pair up one to one.
    #[test]
    fn a_block_runs_interleaved_rounds_after_one_warm_up_round() {
        let cases = [case(1, 1), case(3, 2), case(3, 3), case(1, 4)];
        let steps = schedule(&cases, 2);
        let (t, f) = (true, false);
        let want = vec![
            // repetition 0: warm-up round (forward), then backward, forward, backward
            (0, t),
            (1, f),
            (2, f),
            (2, t),
            (1, t),
            (1, t),
            (2, t),
            (2, t),
            (1, t),
            (3, t),
            // repetition 1: no warm-up; starts forward (4 rounds were run before)
            (0, t),
            (1, t),
            (2, t),
            (2, t),
            (1, t),
            (1, t),
            (2, t),
            (3, t),
        ];
        assert_eq!(order(&steps), want);
        for c in [1, 2] {
            let measured = steps.iter().filter(|s| s.case == c && s.measured).count();
            assert_eq!(measured, 6, "case {c}");
        }
    }

    /// Two blocks with different round counts are two blocks, not one.
    #[test]
    fn adjacent_cases_with_different_rounds_are_separate_blocks() {
        let cases = [case(2, 1), case(3, 2)];
        let steps = schedule(&cases, 1);
        let case0: Vec<usize> = steps
            .iter()
            .filter(|s| s.case == 0)
            .map(|s| s.rep)
            .collect();
        assert_eq!(case0.len(), 3); // warm-up + 2
                                    // All of case 0's steps come before any of case 1's.
        let last0 = steps.iter().rposition(|s| s.case == 0).unwrap();
        let first1 = steps.iter().position(|s| s.case == 1).unwrap();
        assert!(last0 < first1);
    }
}
