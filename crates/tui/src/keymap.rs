//! The key map: the embedded default (assets/default-keybind.toml) with the user's `[keys]`
//! table merged over it, action by action. The help popup is generated from it.

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use serde::{Deserialize, Serialize};

use super::action::Action;

/// The default key map (action name → space-separated key specs).
pub const DEFAULT_KEYBIND_TOML: &str = include_str!("../../../assets/default-keybind.toml");

/// An action named in a `[keys]` table. It checks itself while the config is read, so a typo is
/// reported with its line by the TOML reader.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ActionName(String);

impl TryFrom<String> for ActionName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        match Action::from_name(&name) {
            Some(_) => Ok(Self(name)),
            None => Err(format!("unknown action {name:?} in [keys]")),
        }
    }
}

impl From<ActionName> for String {
    fn from(name: ActionName) -> String {
        name.0
    }
}

impl ActionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The keys of one action as written in a config file (`"j down ctrl-n"`), checked while the
/// config is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyList {
    written: String,
    keys: Vec<KeySpec>,
}

impl TryFrom<String> for KeyList {
    type Error = String;
    fn try_from(written: String) -> Result<Self, String> {
        let keys = written
            .split_whitespace()
            .map(KeySpec::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { written, keys })
    }
}

impl From<KeyList> for String {
    fn from(list: KeyList) -> String {
        list.written
    }
}

impl KeyList {
    pub fn as_str(&self) -> &str {
        &self.written
    }
}

/// A user's `[keys]` table: action → its keys, each replacing that action's defaults.
pub type KeyOverrides = BTreeMap<ActionName, KeyList>;

/// Build overrides from plain strings (tests, and callers that hold text).
pub fn key_overrides(pairs: &[(&str, &str)]) -> Result<KeyOverrides, String> {
    pairs
        .iter()
        .map(|(a, k)| {
            Ok((
                ActionName::try_from(a.to_string())?,
                KeyList::try_from(k.to_string()).map_err(|e| format!("[keys] {a}: {e}"))?,
            ))
        })
        .collect()
}

/// A key with the modifiers that matter (ctrl, alt; shift is folded into the character).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeySpec {
    pub code: KeyCodeKey,
    pub ctrl: bool,
    pub alt: bool,
}

/// The subset of key codes the map can name (ordered, unlike crossterm's `KeyCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyCodeKey {
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Backspace,
}

impl KeySpec {
    /// Parse `"j"`, `"G"`, `"ctrl-c"`, `"pagedown"`, `"space"`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = spec;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 2 && lower.starts_with("ctrl-") {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.chars().count() > 2 && lower.starts_with("alt-") {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCodeKey::Char(c),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => KeyCodeKey::Enter,
                "esc" | "escape" => KeyCodeKey::Esc,
                "tab" => KeyCodeKey::Tab,
                "backtab" => KeyCodeKey::BackTab,
                "up" => KeyCodeKey::Up,
                "down" => KeyCodeKey::Down,
                "left" => KeyCodeKey::Left,
                "right" => KeyCodeKey::Right,
                "pageup" => KeyCodeKey::PageUp,
                "pagedown" => KeyCodeKey::PageDown,
                "home" => KeyCodeKey::Home,
                "end" => KeyCodeKey::End,
                "backspace" => KeyCodeKey::Backspace,
                "space" => KeyCodeKey::Char(' '),
                _ => return Err(format!("unknown key {spec:?}")),
            },
        };
        Ok(Self { code, ctrl, alt })
    }

    /// From a terminal key event; None for keys the map cannot name.
    pub fn from_event(key: &KeyEvent) -> Option<Self> {
        let code = match key.code {
            KeyCode::Char(c) => KeyCodeKey::Char(c),
            KeyCode::Enter => KeyCodeKey::Enter,
            KeyCode::Esc => KeyCodeKey::Esc,
            KeyCode::Tab => KeyCodeKey::Tab,
            KeyCode::BackTab => KeyCodeKey::BackTab,
            KeyCode::Up => KeyCodeKey::Up,
            KeyCode::Down => KeyCodeKey::Down,
            KeyCode::Left => KeyCodeKey::Left,
            KeyCode::Right => KeyCodeKey::Right,
            KeyCode::PageUp => KeyCodeKey::PageUp,
            KeyCode::PageDown => KeyCodeKey::PageDown,
            KeyCode::Home => KeyCodeKey::Home,
            KeyCode::End => KeyCodeKey::End,
            KeyCode::Backspace => KeyCodeKey::Backspace,
            _ => return None,
        };
        Some(Self {
            code,
            ctrl: key.modifiers.contains(KeyModifiers::CONTROL),
            alt: key.modifiers.contains(KeyModifiers::ALT),
        })
    }

    /// How the help popup shows the key.
    pub fn display(&self) -> String {
        let base = match self.code {
            KeyCodeKey::Char(' ') => "Space".to_string(),
            KeyCodeKey::Char(c) => c.to_string(),
            KeyCodeKey::Enter => "Enter".into(),
            KeyCodeKey::Esc => "Esc".into(),
            KeyCodeKey::Tab => "Tab".into(),
            KeyCodeKey::BackTab => "S-Tab".into(),
            KeyCodeKey::Up => "↑".into(),
            KeyCodeKey::Down => "↓".into(),
            KeyCodeKey::Left => "←".into(),
            KeyCodeKey::Right => "→".into(),
            KeyCodeKey::PageUp => "PgUp".into(),
            KeyCodeKey::PageDown => "PgDn".into(),
            KeyCodeKey::Home => "Home".into(),
            KeyCodeKey::End => "End".into(),
            KeyCodeKey::Backspace => "Bksp".into(),
        };
        let mut out = String::new();
        if self.ctrl {
            out.push_str("C-");
        }
        if self.alt {
            out.push_str("M-");
        }
        out + &base
    }
}

/// Key → action lookup plus, per action, its keys in the order written.
#[derive(Clone, Debug)]
pub struct KeyMap {
    by_key: BTreeMap<KeySpec, Action>,
    by_action: Vec<(Action, Vec<KeySpec>)>,
}

impl KeyMap {
    /// The default map with `overrides` (action → keys) merged over it. A map where no key
    /// quits is refused: the explorer could not be left.
    pub fn new(overrides: &KeyOverrides) -> Result<Self, String> {
        let mut merged: BTreeMap<ActionName, KeyList> =
            toml::from_str(DEFAULT_KEYBIND_TOML).map_err(|e| format!("default key map: {e}"))?;
        for (k, v) in overrides {
            merged.insert(k.clone(), v.clone());
        }
        let mut by_action: Vec<(Action, Vec<KeySpec>)> = Vec::new();
        for (name, list) in &merged {
            let action = Action::from_name(name.as_str())
                .ok_or_else(|| format!("[keys]: unknown action {:?}", name.as_str()))?;
            by_action.push((action, list.keys.clone()));
        }
        let user_actions: Vec<&str> = overrides.keys().map(ActionName::as_str).collect();
        // A key the user bound explicitly wins over a default binding of the same key.
        let mut by_key = BTreeMap::new();
        for user_pass in [false, true] {
            for (action, keys) in &by_action {
                let is_user = action
                    .name()
                    .is_some_and(|n| user_actions.contains(&n.as_str()));
                if is_user == user_pass {
                    for k in keys {
                        by_key.insert(*k, action.clone());
                    }
                }
            }
        }
        // Keep per-action lists consistent with the lookup (drop keys stolen by the user).
        for (action, keys) in &mut by_action {
            keys.retain(|k| by_key.get(k) == Some(action));
        }
        by_action.sort_by_key(|(a, _)| Action::BINDABLE.iter().position(|b| b == a));
        if !by_key.values().any(|a| *a == Action::Quit) {
            return Err("[keys]: no key is left to quit (bind quit to at least one key)".into());
        }
        Ok(Self { by_key, by_action })
    }

    pub fn action_for(&self, key: &KeyEvent) -> Option<Action> {
        KeySpec::from_event(key).and_then(|k| self.by_key.get(&k).cloned())
    }

    /// Keys bound to an action, in the order written (for help and hints).
    pub fn keys_for(&self, action: &Action) -> Vec<KeySpec> {
        self.by_action
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, k)| k.clone())
            .unwrap_or_default()
    }

    /// Display form of the first key of an action, or "unbound".
    pub fn hint(&self, action: &Action) -> String {
        self.keys_for(action)
            .first()
            .map_or_else(|| "unbound".to_string(), KeySpec::display)
    }

    /// (keys joined, description) for every bindable action, in help order.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        self.by_action
            .iter()
            .map(|(a, keys)| {
                let k: Vec<String> = keys.iter().map(KeySpec::display).collect();
                let shown = if k.is_empty() {
                    "unbound".to_string()
                } else {
                    k.join(" ")
                };
                (shown, a.describe())
            })
            .collect()
    }
}

impl Default for KeyMap {
    fn default() -> Self {
        // The embedded default is tested to parse; fall back to an empty map rather than panic.
        Self::new(&KeyOverrides::new()).unwrap_or(Self {
            by_key: BTreeMap::new(),
            by_action: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(c, m)
    }

    #[test]
    fn default_map_binds_every_bindable_action() {
        let map = KeyMap::new(&KeyOverrides::new()).unwrap();
        for a in Action::BINDABLE {
            assert!(!map.keys_for(&a).is_empty(), "{a:?} unbound");
        }
        assert_eq!(
            map.action_for(&key(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::MoveDown)
        );
        assert_eq!(
            map.action_for(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(map.help_rows().len(), Action::BINDABLE.len());
    }

    #[test]
    fn user_override_replaces_action_and_steals_key() {
        let o = key_overrides(&[("move_down", "ctrl-n"), ("yank", "j")]).unwrap();
        let map = KeyMap::new(&o).unwrap();
        assert_eq!(
            map.action_for(&key(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Yank)
        );
        assert_eq!(
            map.action_for(&key(KeyCode::Char('n'), KeyModifiers::CONTROL)),
            Some(Action::MoveDown)
        );
        assert_eq!(map.keys_for(&Action::MoveDown).len(), 1);
    }

    #[test]
    fn bad_override_is_a_clear_error() {
        assert!(key_overrides(&[("fly", "f")]).unwrap_err().contains("fly"));
        assert!(key_overrides(&[("quit", "hyper-q")])
            .unwrap_err()
            .contains("hyper-q"));
    }

    #[test]
    fn a_map_that_cannot_quit_is_refused() {
        // ctrl-c is quit's second default key; binding both away leaves no way out.
        let o = key_overrides(&[("quit", "")]).unwrap();
        assert!(KeyMap::new(&o).unwrap_err().contains("quit"));
        let o = key_overrides(&[("quit", "x"), ("yank", "x")]).unwrap();
        assert!(KeyMap::new(&o).unwrap_err().contains("quit"));
        let o = key_overrides(&[("quit", "x")]).unwrap();
        assert!(KeyMap::new(&o).is_ok());
    }
}
