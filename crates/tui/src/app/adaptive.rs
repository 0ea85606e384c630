//! Adaptive sweeps from the explorer (`A`, and `R` with `[sampling] adaptive = true`): the plan
//! a job carries (settings, the behavior that decides, the similarity threshold) and the
//! decisions kept for the open trace.

use super::App;
use crate::jobs::AdaptiveRecord;
use anchorscope_core::analysis::adaptive::AdaptiveSettings;
use anchorscope_core::analysis::THEIRS_SUFFIX;
use anchorscope_core::behavior::scope::CONTINUATION_SUFFIX;
use anchorscope_engine::AdaptivePlan;

/// A shown behavior's own name: "correct (theirs)" and "compliance (continuation)" are views
/// of `correct` and `compliance`, which is what classifiers label.
pub fn base_behavior(shown: &str) -> &str {
    shown
        .strip_suffix(THEIRS_SUFFIX)
        .or_else(|| shown.strip_suffix(CONTINUATION_SUFFIX))
        .unwrap_or(shown)
}

/// The behavior an adaptive sweep decides on: the shown one when a configured classifier
/// labels it (new rollouts carry its label), else the first labelled one. `Ok((name, None))`
/// or `Ok((name, Some(why the shown one is not)))`; `Err` when nothing is labelled at all.
pub fn plan_behavior(shown: &str, labelled: &[String]) -> Result<(String, Option<String>), String> {
    let base = base_behavior(shown);
    if labelled.iter().any(|n| n == base) {
        return Ok((base.to_string(), None));
    }
    let Some(first) = labelled.first() else {
        return Err(
            "an adaptive sweep decides on a behavior new rollouts are labelled for, and no \
             classifier is configured"
                .to_string(),
        );
    };
    let why = if shown == "none" {
        "no behavior is shown".to_string()
    } else {
        format!("`{base}` has no classifier here")
    };
    Ok((first.clone(), Some(why)))
}

impl App {
    /// Whether `R` samples adaptively (`[sampling] adaptive = true`).
    pub fn adaptive_by_default(&self) -> bool {
        self.sampling.adaptive
    }

    /// `[sampling.adaptive_settings]`, what every adaptive sweep of this session uses.
    pub fn adaptive_settings(&self) -> &AdaptiveSettings {
        &self.sampling.adaptive_settings
    }

    /// `A` (and `R` when the config says adaptive): an adaptive sweep of every position of the
    /// open trace, after the same checks as any resampling.
    pub(crate) fn resample_adaptive(&mut self) {
        if self.engine.is_none() {
            return self.set_info(super::NO_ENGINE.to_string());
        }
        match self.adaptive_plan() {
            Ok(plan) => self.request_sampling((0..=self.sentence_count()).collect(), Some(plan)),
            Err(e) => self.set_error(e),
        }
    }

    /// The plan of an adaptive sweep: the configured settings, the behavior coloring the text
    /// (or the first labelled one), and the similarity threshold the analysis uses, so the
    /// sweep stops on the numbers the panes show.
    pub(crate) fn adaptive_plan(&self) -> Result<AdaptivePlan, String> {
        let settings = self.adaptive_settings().clone();
        settings
            .check()
            .map_err(|e| format!("[sampling.adaptive_settings] {e}"))?;
        let (behavior, _) = plan_behavior(&self.behavior_name(), &self.behavior_names)?;
        Ok(AdaptivePlan {
            settings,
            behavior,
            similarity_threshold: self.options.similarity_threshold,
        })
    }

    /// "adaptive sweep on `compliance` (n_max 100, round 10)", saying why when the behavior is
    /// not the one coloring the text.
    pub(crate) fn adaptive_doing(&self, plan: &AdaptivePlan) -> String {
        let settings = format!(
            "n_max {}, round {}",
            plan.settings.n_max, plan.settings.round
        );
        let why = match plan_behavior(&self.behavior_name(), &self.behavior_names) {
            Ok((name, Some(why))) if name == plan.behavior => format!("{why}; "),
            _ => String::new(),
        };
        format!("adaptive sweep on `{}` ({why}{settings})", plan.behavior)
    }

    /// The last adaptive decisions on the open trace (kept after the sweep ends).
    pub fn adaptive_record(&self) -> Option<&AdaptiveRecord> {
        self.jobs.adaptive_of_trace(self.current)
    }

    /// Whether the sweep behind `record` still samples.
    pub fn adaptive_running(&self, record: &AdaptiveRecord) -> bool {
        self.jobs.is_current(record.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_shown_behavior_decides_when_it_is_labelled() {
        let labelled = names(&["compliance", "alignment_faking"]);
        assert_eq!(
            plan_behavior("alignment_faking", &labelled),
            Ok(("alignment_faking".to_string(), None))
        );
        // A view of a labelled behavior decides on that behavior.
        assert_eq!(
            plan_behavior("compliance (continuation)", &labelled),
            Ok(("compliance".to_string(), None))
        );
        assert_eq!(
            plan_behavior("alignment_faking (theirs)", &labelled)
                .unwrap()
                .0,
            "alignment_faking"
        );
    }

    #[test]
    fn an_unlabelled_behavior_falls_back_to_the_first_labelled_and_says_so() {
        let labelled = names(&["compliance", "alignment_faking"]);
        let (name, why) = plan_behavior("correct (theirs)", &labelled).unwrap();
        assert_eq!(name, "compliance");
        assert_eq!(why.as_deref(), Some("`correct` has no classifier here"));
        assert!(plan_behavior("correct", &[]).is_err());
    }
}
