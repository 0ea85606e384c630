//! The user's config file (TOML): key map, theme, behaviors, splitter and analysis settings.
//! Defaults come from `assets/`; the user's file is merged over them.
//!
//! ```toml
//! [keys]            # action name = "key key …" (see assets/default-keybind.toml)
//! move_down = "j down ctrl-n"
//! [theme]           # role = color (see assets/theme.toml)
//! promote_strong = "#ff8800"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisOptions;
use crate::behavior::BehaviorsConfig;
use crate::engine::remote::{EngineSettings, JudgeSettings};
use crate::store::runs::SamplingConfig;
use crate::trace::split::SplitOptions;
use crate::tui::keymap::{KeyMap, KeyOverrides};
use crate::tui::theme::ThemeOverrides;
use crate::tui::ExplorerSettings;

/// The whole file. Every table and key is known: a typo is an error naming its line, never a
/// setting silently ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub split: SplitOptions,
    pub analysis: AnalysisOptions,
    /// `[[behavior]]` tables: the user's own behaviors.
    #[serde(rename = "behavior")]
    pub behaviors: BehaviorsConfig,
    /// Key map overrides: action → keys separated by spaces (e.g. `"j down"`). Each action
    /// named here replaces that action's default keys; others keep theirs. Action names and
    /// keys check themselves while the file is read.
    pub keys: KeyOverrides,
    /// Theme overrides: role → color (`"#rrggbb"`, `"208"`, `"red"`, `"reset"`).
    pub theme: ThemeOverrides,
    /// `[engine]`: the local model or an OpenAI-compatible server (see engine::remote::settings).
    pub engine: EngineSettings,
    /// `[judge]`: the model judge for alignment faking.
    pub judge: JudgeSettings,
    /// `[sampling]`: which runs' rollouts rates pool (see store::runs).
    pub sampling: SamplingConfig,
    /// `export_dir = "…"` (top level, before any table): where the explorer's `e` writes
    /// exports (default `./anchorscope-exports`; `--export-dir` overrides it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_dir: Option<PathBuf>,
}

impl Config {
    /// Read a config file; errors name the file and the line/column.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parse config text; the error says the line and column (1-based). Unknown tables and
    /// keys, key names, key specs and theme colors are all reported with their line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e: toml::de::Error| {
            let place = e.span().map(|span| {
                let (line, col) = line_col(text, span.start);
                format!("line {line}, column {col}: ")
            });
            format!("{}{}", place.unwrap_or_default(), e.message())
        })?;
        // Whole-map rules that no single key can check: a map must keep a way to quit.
        KeyMap::new(&config.keys).map_err(|e| format!("{}{e}", place_of_table(text, "keys")))?;
        config
            .engine
            .validate_ranges()
            .and_then(|()| config.judge.validate())
            .map_err(|e| {
                let section = if e.starts_with("[judge]") {
                    "judge"
                } else {
                    "engine"
                };
                format!("{}{e}", place_of_table(text, section))
            })?;
        Ok(config)
    }

    /// What the explorer needs from the file.
    pub fn explorer(&self) -> ExplorerSettings {
        ExplorerSettings {
            keys: self.keys.clone(),
            theme: self.theme.clone(),
            behaviors: self.behaviors.clone(),
            analysis: self.analysis.clone(),
            sampling: self.sampling.clone(),
            export_dir: self.export_dir.clone(),
        }
    }

    /// Default config locations in the order they are tried (XDG base-directory rules: a
    /// relative or empty `XDG_CONFIG_HOME` is ignored), then `~/.config/anchorscope/config.toml`.
    pub fn default_locations(
        xdg_config_home: Option<std::ffi::OsString>,
        home: Option<std::ffi::OsString>,
    ) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(xdg) = xdg_config_home.map(PathBuf::from) {
            if xdg.is_absolute() {
                out.push(xdg.join("anchorscope").join("config.toml"));
            }
        }
        if let Some(home) = home.filter(|h| !h.is_empty()).map(PathBuf::from) {
            let p = home.join(".config").join("anchorscope").join("config.toml");
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The first existing default config file, if any.
    pub fn default_path() -> Option<PathBuf> {
        Self::default_locations(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
        .into_iter()
        .find(|p| p.is_file())
    }

    /// The config at [`Config::default_path`] when that file exists, else the defaults.
    /// A file that exists but does not parse is an error (silently ignoring it would hide typos).
    pub fn load_or_default() -> anyhow::Result<Self> {
        match Self::default_path() {
            Some(path) => Self::load(&path).map_err(|e| {
                e.context(format!(
                    "reading the default config file {} (pass --config to use another)",
                    path.display()
                ))
            }),
            None => Ok(Self::default()),
        }
    }
}

/// "line N: " of a table's header (`[name]`), or "" when the file has none.
fn place_of_table(text: &str, name: &str) -> String {
    let header = format!("[{name}]");
    text.lines()
        .position(|l| l.trim() == header)
        .map_or_else(String::new, |i| format!("line {}: ", i + 1))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_first_then_home() {
        let got = Config::default_locations(Some("/x".into()), Some("/h".into()));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/x/anchorscope/config.toml"),
                PathBuf::from("/h/.config/anchorscope/config.toml"),
            ]
        );
    }

    #[test]
    fn relative_xdg_and_empty_home_are_ignored() {
        assert_eq!(
            Config::default_locations(Some("rel".into()), Some("".into())),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            Config::default_locations(None, Some("/h".into())),
            vec![PathBuf::from("/h/.config/anchorscope/config.toml")]
        );
    }

    #[test]
    fn parses_keys_and_theme_tables() {
        let c = Config::parse(
            "[keys]\nmove_down = \"j ctrl-n\"\n[theme]\npromote_strong = \"#ff0000\"\n",
        )
        .unwrap();
        let (action, keys) = c.keys.iter().next().unwrap();
        assert_eq!((action.as_str(), keys.as_str()), ("move_down", "j ctrl-n"));
        assert_eq!(c.theme.len(), 1);
    }

    #[test]
    fn error_names_line_and_column() {
        let err = Config::parse("[keys]\nmove_down = \"j\"\nquit = = \n").unwrap_err();
        assert!(err.starts_with("line 3, column"), "{err}");
    }

    #[test]
    fn unknown_action_or_color_names_its_line() {
        let err = Config::parse("[keys]\nquit = \"q\"\nfly = \"f\"\n").unwrap_err();
        assert!(
            err.starts_with("line 3, column 1: ") && err.contains("fly"),
            "{err}"
        );
        let err = Config::parse("[theme]\n\npromote_strong = \"#12\"\n").unwrap_err();
        assert!(
            err.starts_with("line 3, column ") && err.contains("#12"),
            "{err}"
        );
        let err = Config::parse("[keys]\nquit = \"hyper-q\"\n").unwrap_err();
        assert!(
            err.starts_with("line 2, column ") && err.contains("hyper-q"),
            "{err}"
        );
        let err = Config::parse("[keys]\nquit = \"x\"\nyank = \"x\"\n").unwrap_err();
        assert!(err.starts_with("line 1: ") && err.contains("quit"), "{err}");
    }

    #[test]
    fn unknown_tables_and_keys_are_errors_with_their_line() {
        let err =
            Config::parse("[analysis]\nfdr_level = 0.1\nsimilarity_treshold = 0.8\n").unwrap_err();
        assert!(
            err.starts_with("line 3, column 1: ") && err.contains("similarity_treshold"),
            "{err}"
        );
        let err = Config::parse("[sampling]\npool = \"all\"\n\n[sampler]\nn = 3\n").unwrap_err();
        assert!(
            err.starts_with("line 4, column ") && err.contains("sampler"),
            "{err}"
        );
        let err = Config::parse("[split]\nmin_char = 3\n").unwrap_err();
        assert!(
            err.starts_with("line 2, column 1: ") && err.contains("min_char"),
            "{err}"
        );
        let err = Config::parse("[[behavior]]\nname = \"x\"\nreasonig = \"a\"\n").unwrap_err();
        assert!(
            err.starts_with("line 3, column 1: ") && err.contains("reasonig"),
            "{err}"
        );
    }

    #[test]
    fn load_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[theme\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn engine_and_judge_sections() {
        let c = Config::parse(
            "[engine]\nkind = \"openai\"\nurl = \"http://h:8000\"\nmodel = \"m\"\n\
             api_key_env = \"MY_KEY\"\n[judge]\nenabled = true\nvotes = 5\n",
        )
        .unwrap();
        assert_eq!(c.engine.kind, crate::engine::remote::EngineKind::Openai);
        assert_eq!(c.engine.api_key_env.as_deref(), Some("MY_KEY"));
        assert!(c.judge.enabled && c.judge.votes == 5);
        let err = Config::parse("[engine]\nconcurrency = 0\n").unwrap_err();
        assert!(err.contains("concurrency"), "{err}");
        let err = Config::parse("[split]\n[judge]\nthreshold = 2.0\n").unwrap_err();
        assert!(
            err.starts_with("line 2: ") && err.contains("threshold"),
            "{err}"
        );
    }

    #[test]
    fn defaults_parse() {
        let keys: KeyOverrides = toml::from_str(crate::tui::keymap::DEFAULT_KEYBIND_TOML).unwrap();
        assert!(keys.keys().any(|a| a.as_str() == "quit"));
        let theme: ThemeOverrides = toml::from_str(crate::tui::theme::DEFAULT_THEME_TOML).unwrap();
        assert!(!theme.is_empty());
    }
}
