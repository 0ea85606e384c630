//! Interventions from the explorer (docs/METHOD.md, "Interventions"): `d` deletes the
//! selected sentence, `w` rewrites it, `t` swaps the tier keeping the reasoning so far, `T`
//! swaps it along the whole trace. Each makes the derived trace (trace::intervention), keeps
//! it beside its parent (store::derived, reused when made again), adds it to the trace list,
//! and samples it just after the change, and the parent at the same point, with the parent's
//! sampler settings. Seeds come from the derived trace's own id, so they never repeat the
//! parent's.

use super::sampling::{job_template, sampler_for};
use super::{
    new_entry, App, Confirm, Popup, Prompt, PromptPurpose, Screen, INTERACTIVE_ROLLOUTS, NO_ENGINE,
};
use anchorscope_core::loaded::attach_store;
use anchorscope_core::store::derived::{derived_path_for, save_derived};
use anchorscope_core::trace::import::SourcedTrace;
use anchorscope_core::trace::intervention::{compared_positions, derive, tier_of, Edit};

impl App {
    /// `d`: delete the selected sentence and sample what the model reasons without it.
    pub(crate) fn delete_sentence(&mut self) {
        self.intervene(
            Edit::Delete {
                sentence: self.selected,
            },
            Vec::new(),
        );
    }

    /// `w`: the rewrite prompt, holding the sentence's text to edit (`Ctrl-E` hands it to
    /// `$EDITOR`).
    pub(crate) fn open_rewrite(&mut self) {
        if let Some(why) = self.cannot_intervene() {
            return self.set_info(why);
        }
        let Some(text) = self
            .entry()
            .and_then(|e| e.loaded.trace.sentences.get(self.selected))
            .map(|s| s.text.clone())
        else {
            return self.set_error("no sentence to rewrite".into());
        };
        self.prompt = Some(Prompt {
            input: text,
            restore_selected: self.selected,
            restore_filter: self.list_filter.clone(),
            purpose: PromptPurpose::Rewrite {
                sentence: self.selected,
            },
        });
    }

    /// The rewrite prompt was confirmed.
    pub(crate) fn rewrite_sentence(&mut self, sentence: usize, text: String) {
        let unchanged = self
            .entry()
            .and_then(|e| e.loaded.trace.sentences.get(sentence))
            .is_some_and(|s| s.text.trim() == text.trim());
        if unchanged {
            return self.set_info(format!(
                "S{sentence} unchanged: nothing to sample (r resamples it)"
            ));
        }
        self.intervene(Edit::Replace { sentence, text }, Vec::new());
    }

    /// `t` (`whole` false): the other tier with the reasoning up to and including the selected
    /// sentence, at positions i and i+1 on both sides; `T` (`whole`): every position.
    pub(crate) fn swap_tier(&mut self, whole: bool) {
        let Some(entry) = self.entry() else { return };
        let Some(free) = tier_of(&entry.loaded.trace.prompt) else {
            return self.set_error(format!(
                "{}: no <is_free_tier_user>true|false</is_free_tier_user> in the user turn: no \
                 tier to swap",
                entry.loaded.trace.id
            ));
        };
        let positions = if whole {
            (0..entry.loaded.trace.positions()).collect()
        } else {
            vec![self.selected, self.selected + 1]
        };
        self.intervene(Edit::SwapTier { free: !free }, positions);
    }

    /// Why no intervention can start on the open trace now, if so.
    fn cannot_intervene(&self) -> Option<String> {
        if self.engine.is_none() {
            return Some(NO_ENGINE.to_string());
        }
        let entry = self.entry()?;
        let derived = entry.loaded.trace.derived.as_ref()?;
        Some(format!(
            "{} is itself an intervention ({}): intervene on {}",
            entry.loaded.trace.id,
            derived.edit.describe(),
            derived.parent
        ))
    }

    /// Make (or find) the derived trace of `edit` on the open trace and queue its jobs: the
    /// derived trace after the change, then the parent at the matching point (for a tier
    /// swap, `tier_positions` on both).
    fn intervene(&mut self, edit: Edit, tier_positions: Vec<usize>) {
        if let Some(why) = self.cannot_intervene() {
            return self.set_info(why);
        }
        // As for `r`: rollouts of another model continuing this one's reasoning are asked about.
        if !self.model_confirmed.contains(&self.current) {
            if let Some(why) = self.other_model() {
                self.popup = Some(Popup::Confirm(Confirm::Intervene {
                    edit,
                    tier_positions,
                    reasons: vec![why],
                }));
                return;
            }
        }
        self.intervene_now(edit, tier_positions);
    }

    /// [`App::intervene`] once any question was answered.
    pub(crate) fn intervene_now(&mut self, edit: Edit, tier_positions: Vec<usize>) {
        let parent_index = self.current;
        let Some(entry) = self.entry() else { return };
        let parent = &entry.loaded.trace;
        let derived = match derive(parent, edit.clone()) {
            Ok(d) => d,
            Err(e) => return self.set_error(format!("{}: {e}", parent.id)),
        };
        let path = derived_path_for(&entry.loaded.path, &derived.id);
        let (derived_positions, parent_positions): (Vec<usize>, Vec<usize>) = match edit {
            Edit::SwapTier { .. } => (tier_positions.clone(), tier_positions),
            _ => compared_positions(&derived).into_iter().unzip(),
        };
        // The file is written, or checked to hold this very derivation, before any sampling.
        if let Err(e) = save_derived(&path, &derived) {
            return self.set_error(e.to_string());
        }
        let child = match self
            .traces
            .iter()
            .position(|e| e.loaded.path == path && e.loaded.trace.id == derived.id)
        {
            Some(k) => k,
            None => {
                let loaded = attach_store(SourcedTrace {
                    trace: derived,
                    rollouts: Vec::new(),
                    path: path.clone(),
                    member: None,
                    warnings: Vec::new(),
                });
                let entry = match new_entry(
                    loaded,
                    &self.behaviors_config,
                    &self.outcome_set,
                    self.scope_set.as_ref(),
                    &self.behavior_names,
                    &self.options,
                    self.pool_mode,
                ) {
                    Ok(e) => e,
                    Err(e) => return self.set_error(format!("{}: {e}", path.display())),
                };
                self.traces.push(entry);
                // Several traces now: Esc goes to the list, where the derived one is listed.
                self.has_list = true;
                self.traces.len() - 1
            }
        };
        let waiting = self.jobs.busy();
        let derived_id = self.traces[child].loaded.trace.id.clone();
        let parent_id = self.traces[parent_index].loaded.trace.id.clone();
        let what = |id: &str, positions: &[usize]| match positions {
            [one] => format!("{id} · {INTERACTIVE_ROLLOUTS} rollouts at position {one}"),
            [i, j] if *j == i + 1 => {
                format!("{id} · {INTERACTIVE_ROLLOUTS} rollouts at positions {i}, {j}")
            }
            all => format!(
                "{id} · {INTERACTIVE_ROLLOUTS} rollouts at all {} positions",
                all.len()
            ),
        };
        // Both sides with the parent's settings (those of the run its rates pool around).
        let sampler = sampler_for(&self.traces[parent_index]);
        for (index, id, positions) in [
            (child, &derived_id, derived_positions),
            (parent_index, &parent_id, parent_positions),
        ] {
            let describe = what(id, &positions);
            let mut template =
                job_template(&self.traces[index], positions, INTERACTIVE_ROLLOUTS, None);
            template.sampler = sampler.clone();
            self.jobs.add(template, index, describe);
        }
        let queued = if waiting {
            " (queued behind the running job)"
        } else {
            ""
        };
        self.set_info(format!(
            "{}: {derived_id} · sampling after the change and the original at the same \
             point{queued}; the detail pane shows the effect",
            edit.describe()
        ));
        self.submit_next();
    }

    /// `$EDITOR` gave back the rewrite's text (or failed): the prompt holds it for a last look.
    pub fn editor_finished(&mut self, result: Result<String, String>) {
        match (result, self.prompt.as_mut()) {
            (Ok(text), Some(prompt)) => {
                // One sentence: the editor's line breaks become spaces.
                prompt.input = text.split_whitespace().collect::<Vec<_>>().join(" ");
                self.set_info("edited: Enter samples the rewrite, Esc cancels".into());
            }
            (Ok(_), None) => {}
            (Err(e), _) => self.set_error(format!("$EDITOR: {e}")),
        }
    }

    /// The text the loop should hand to `$EDITOR`, once (`Ctrl-E` in the rewrite prompt).
    pub fn take_editor_request(&mut self) -> Option<String> {
        self.editor_request.take()
    }

    /// `Ctrl-E` in the rewrite prompt.
    pub(crate) fn request_editor(&mut self) {
        if let Some(p) = &self.prompt {
            if matches!(p.purpose, PromptPurpose::Rewrite { .. }) && self.screen == Screen::Trace {
                self.editor_request = Some(p.input.clone());
            }
        }
    }
}
