//! Repetition, frequency and presence penalties with vLLM's semantics
//! (`vllm/model_executor/layers/utils.py::apply_penalties`), applied to the logits before
//! temperature and the filters, greedy included:
//! - `repetition_penalty` (> 0, 1 = off) on every token seen in the prompt or the output:
//!   a positive logit is divided by it, any other multiplied;
//! - `frequency_penalty` (-2..2): minus the penalty times the token's count in the output;
//! - `presence_penalty` (-2..2): minus the penalty once if the token is in the output.
//!
//! The prompt's token set is built once and the output counts are kept incrementally
//! ([`Penalties::record`] per sampled token), so a step touches only the tokens seen so
//! far, never the history. Operations: [`Penalties::new`], [`Penalties::is_active`],
//! [`Penalties::apply`], [`Penalties::record`].

use std::collections::{HashMap, HashSet};

/// A request's penalty settings and the token statistics they need.
#[derive(Debug, Clone, Default)]
pub struct Penalties {
    repetition: f32,
    frequency: f32,
    presence: f32,
    /// Distinct prompt tokens (kept only when the repetition penalty is on).
    prompt: HashSet<u32>,
    /// How often each token occurs in the output so far.
    counts: HashMap<u32, u32>,
}

impl Penalties {
    /// Penalties for a request with `prompt`; neutral values (1, 0, 0) turn each one off.
    pub fn new(repetition: f32, frequency: f32, presence: f32, prompt: &[u32]) -> Self {
        let prompt = if repetition != 1.0 {
            prompt.iter().copied().collect()
        } else {
            HashSet::new()
        };
        Penalties {
            repetition,
            frequency,
            presence,
            prompt,
            counts: HashMap::new(),
        }
    }

    /// Whether any penalty changes the logits.
    pub fn is_active(&self) -> bool {
        self.repetition != 1.0 || self.frequency != 0.0 || self.presence != 0.0
    }

    /// Applies the penalties to `logits` in place (repetition, then frequency, then
    /// presence). Ids outside `logits` are skipped.
    pub fn apply(&self, logits: &mut [f32]) {
        if !self.is_active() {
            return;
        }
        let rep = |l: &mut f32| {
            if *l > 0.0 {
                *l /= self.repetition;
            } else {
                *l *= self.repetition;
            }
        };
        if self.repetition != 1.0 {
            for &t in &self.prompt {
                if let Some(l) = logits.get_mut(t as usize) {
                    rep(l);
                }
            }
        }
        for (&t, &n) in &self.counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if self.repetition != 1.0 && !self.prompt.contains(&t) {
                rep(l);
            }
            *l -= self.frequency * n as f32 + self.presence;
        }
    }

    /// Counts a sampled token (only when a penalty needs the counts).
    pub fn record(&mut self, token: u32) {
        if self.is_active() {
            *self.counts.entry(token).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::argmax;

    #[test]
    fn neutral_values_change_nothing() {
        let mut p = Penalties::new(1.0, 0.0, 0.0, &[0, 1]);
        assert!(!p.is_active());
        p.record(0);
        let mut l = [2.0f32, -1.0, 0.5];
        p.apply(&mut l);
        assert_eq!(l, [2.0, -1.0, 0.5]);
    }

    #[test]
    fn repetition_divides_positive_and_multiplies_negative_logits_of_seen_tokens() {
        // Token 0 is in the prompt, token 2 in the output, token 1 unseen.
        let mut p = Penalties::new(2.0, 0.0, 0.0, &[0, 0]);
        p.record(2);
        let mut l = [3.0f32, 1.6, -1.0, -1.0];
        p.apply(&mut l);
        assert_eq!(l, [1.5, 1.6, -2.0, -1.0]);
        // The pick moves from the repeated prompt token to the unseen one.
        assert_eq!(argmax(&l), 1);
        // Below 1 it favours seen tokens instead.
        let p = Penalties::new(0.5, 0.0, 0.0, &[1]);
        let mut l = [3.0f32, 1.6];
        p.apply(&mut l);
        assert_eq!(argmax(&l), 1);
    }

    #[test]
    fn frequency_scales_with_the_output_count_and_ignores_the_prompt() {
        let mut p = Penalties::new(1.0, 0.5, 0.0, &[1]);
        for t in [0, 0, 0, 2] {
            p.record(t);
        }
        let mut l = [2.0f32, 1.9, 1.0];
        p.apply(&mut l);
        assert_eq!(l, [0.5, 1.9, 0.5]);
        assert_eq!(argmax(&l), 1);
    }

    #[test]
    fn presence_subtracts_once_per_seen_token() {
        let mut p = Penalties::new(1.0, 0.0, 1.5, &[]);
        for t in [0, 0, 0, 0] {
            p.record(t);
        }
        let mut l = [2.0f32, 1.0];
        p.apply(&mut l);
        assert_eq!(l, [0.5, 1.0]);
        assert_eq!(argmax(&l), 1);
        // A negative presence penalty rewards repeating.
        let mut p = Penalties::new(1.0, 0.0, -1.5, &[]);
        p.record(1);
        let mut l = [2.0f32, 1.0];
        p.apply(&mut l);
        assert_eq!(argmax(&l), 1);
    }

    #[test]
    fn all_three_compose_in_vllm_order() {
        let mut p = Penalties::new(2.0, 0.25, 0.5, &[5]);
        p.record(0);
        p.record(0);
        let mut l = [4.0f32];
        p.apply(&mut l);
        // (4 / 2) - 0.25 * 2 - 0.5
        assert_eq!(l, [1.0]);
    }
}
