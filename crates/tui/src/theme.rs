//! Colors: the embedded assets/theme.toml with the user's `[theme]` merged over it, and the
//! direction styling of sentences (orange promotes, purple suppresses, tint by magnitude).
//! With `NO_COLOR` every style is plain; direction then shows only as a glyph and a bar.

use std::collections::BTreeMap;

use ratatui::style::{Color, Modifier, Style};

use serde::{Deserialize, Serialize};

use anchorscope_core::analysis::Direction;

/// The default theme (role → color).
pub const DEFAULT_THEME_TOML: &str = include_str!("../../../assets/theme.toml");

/// A role named in a `[theme]` table (a key of the default theme). It checks itself while the
/// config is read, so a typo is reported with its line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ThemeRole(String);

impl TryFrom<String> for ThemeRole {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let roles: BTreeMap<String, String> =
            toml::from_str(DEFAULT_THEME_TOML).map_err(|e| format!("default theme: {e}"))?;
        if roles.contains_key(&name) {
            Ok(Self(name))
        } else {
            Err(format!("unknown theme role {name:?}"))
        }
    }
}

impl From<ThemeRole> for String {
    fn from(role: ThemeRole) -> String {
        role.0
    }
}

/// A color as written in a config file (`"#rrggbb"`, `"208"`, a name, `"reset"`), checked
/// while the config is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ThemeColor {
    written: String,
    color: Color,
}

impl TryFrom<String> for ThemeColor {
    type Error = String;
    fn try_from(written: String) -> Result<Self, String> {
        let color = parse_color(&written)?;
        Ok(Self { written, color })
    }
}

impl From<ThemeColor> for String {
    fn from(color: ThemeColor) -> String {
        color.written
    }
}

/// A user's `[theme]` table: role → color, merged over the default theme.
pub type ThemeOverrides = BTreeMap<ThemeRole, ThemeColor>;

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub no_color: bool,
    pub promote_faint: Color,
    pub promote_strong: Color,
    pub suppress_faint: Color,
    pub suppress_strong: Color,
    pub neutral: Color,
    pub border: Color,
    pub focus: Color,
    pub title: Color,
    pub muted: Color,
    pub error: Color,
    pub ok: Color,
    pub behaviors: Vec<Color>,
}

/// Parse `"#rrggbb"`, `"208"`, a color name or `"reset"`.
pub fn parse_color(s: &str) -> Result<Color, String> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix('#') {
        if hex.len() == 6 && hex.is_ascii() {
            let p = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16);
            if let (Ok(r), Ok(g), Ok(b)) = (p(0), p(2), p(4)) {
                return Ok(Color::Rgb(r, g, b));
            }
        }
        return Err(format!("bad color {s:?} (want #rrggbb)"));
    }
    if let Ok(i) = t.parse::<u8>() {
        return Ok(Color::Indexed(i));
    }
    if t.eq_ignore_ascii_case("reset") || t.eq_ignore_ascii_case("default") {
        return Ok(Color::Reset);
    }
    t.parse::<Color>()
        .map_err(|_| format!("unknown color {s:?}"))
}

impl Theme {
    /// The default theme with `overrides` merged over it; `no_color` strips every color.
    pub fn new(overrides: &ThemeOverrides, no_color: bool) -> Result<Self, String> {
        let mut roles: BTreeMap<String, String> =
            toml::from_str(DEFAULT_THEME_TOML).map_err(|e| format!("default theme: {e}"))?;
        for (k, v) in overrides {
            roles.insert(k.0.clone(), v.written.clone());
        }
        let get = |name: &str| -> Result<Color, String> {
            let v = roles
                .get(name)
                .ok_or_else(|| format!("theme: missing role {name:?}"))?;
            parse_color(v).map_err(|e| format!("[theme] {name}: {e}"))
        };
        let mut behaviors = Vec::new();
        for i in 1.. {
            match roles.get(&format!("behavior_{i}")) {
                Some(v) => behaviors.push(parse_color(v).map_err(|e| format!("[theme]: {e}"))?),
                None => break,
            }
        }
        Ok(Self {
            no_color,
            promote_faint: get("promote_faint")?,
            promote_strong: get("promote_strong")?,
            suppress_faint: get("suppress_faint")?,
            suppress_strong: get("suppress_strong")?,
            neutral: get("neutral")?,
            border: get("border")?,
            focus: get("focus")?,
            title: get("title")?,
            muted: get("muted")?,
            error: get("error")?,
            ok: get("ok")?,
            behaviors,
        })
    }

    /// True when `NO_COLOR` is set to a non-empty value (no-color.org).
    pub fn no_color_from_env() -> bool {
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    }

    /// A foreground-only style, or plain under NO_COLOR.
    pub fn fg(&self, c: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(c)
        }
    }

    pub fn border_style(&self, focused: bool) -> Style {
        if focused {
            self.fg(self.focus).add_modifier(Modifier::BOLD)
        } else {
            self.fg(self.border)
        }
    }

    pub fn behavior_color(&self, i: usize) -> Color {
        if self.behaviors.is_empty() {
            Color::Reset
        } else {
            self.behaviors[i % self.behaviors.len()]
        }
    }

    /// Style of a sentence's text by direction, absolute level (0..=3) and strength. A strong
    /// sentence (significant, enough rollouts) gets a background between the faint and the
    /// strong tone by level, with black or white text, whichever contrasts; a faint one only
    /// the faint tone, whatever its size, so an unproven effect never looks like a proven one.
    /// Level 0 (|Δ| below the first step) and undefined: default style.
    pub fn direction_style(&self, dir: Option<Direction>, level: u8, strong: bool) -> Style {
        if self.no_color {
            return Style::default();
        }
        let (faint, strong_tone) = match dir {
            Some(Direction::Promotes) => (self.promote_faint, self.promote_strong),
            Some(Direction::Suppresses) => (self.suppress_faint, self.suppress_strong),
            _ => return self.fg(self.neutral),
        };
        if level == 0 {
            return self.fg(self.neutral);
        }
        let bg = if strong {
            // Levels 1, 2, 3 sit at one third, two thirds and all of the way to the strong tone.
            lerp(faint, strong_tone, f64::from(level.min(3)) / 3.0)
        } else {
            faint
        };
        let fg = match bg {
            Color::Rgb(r, g, b) if luminance(r, g, b) < 0.45 => Color::Rgb(255, 255, 255),
            _ => Color::Rgb(0, 0, 0),
        };
        Style::default().fg(fg).bg(bg)
    }

    /// The strong tone of a direction as a foreground (for glyphs and legends).
    pub fn direction_fg(&self, dir: Option<Direction>) -> Style {
        match dir {
            Some(Direction::Promotes) => self.fg(self.promote_strong).add_modifier(Modifier::BOLD),
            Some(Direction::Suppresses) => {
                self.fg(self.suppress_strong).add_modifier(Modifier::BOLD)
            }
            _ => self.fg(self.muted),
        }
    }
}

impl Default for Theme {
    fn default() -> Self {
        Self::new(&ThemeOverrides::new(), false).unwrap_or(Self {
            no_color: true,
            promote_faint: Color::Reset,
            promote_strong: Color::Reset,
            suppress_faint: Color::Reset,
            suppress_strong: Color::Reset,
            neutral: Color::Reset,
            border: Color::Reset,
            focus: Color::Reset,
            title: Color::Reset,
            muted: Color::Reset,
            error: Color::Reset,
            ok: Color::Reset,
            behaviors: Vec::new(),
        })
    }
}

fn luminance(r: u8, g: u8, b: u8) -> f64 {
    (0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64) / 255.0
}

/// Linear interpolation of two RGB colors; a non-RGB end falls back to the strong color.
fn lerp(a: Color, b: Color, t: f64) -> Color {
    match (a, b) {
        (Color::Rgb(r1, g1, b1), Color::Rgb(r2, g2, b2)) => {
            let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
            Color::Rgb(mix(r1, r2), mix(g1, g2), mix(b1, b2))
        }
        _ => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_colors() {
        assert_eq!(parse_color("#ff8000"), Ok(Color::Rgb(255, 128, 0)));
        assert_eq!(parse_color("208"), Ok(Color::Indexed(208)));
        assert_eq!(parse_color("red"), Ok(Color::Red));
        assert_eq!(parse_color("reset"), Ok(Color::Reset));
        assert!(parse_color("#ff80").is_err());
        assert!(parse_color("ultraviolet").is_err());
    }

    #[test]
    fn strength_follows_significance_and_level() {
        let t = Theme::default();
        let faint = t.direction_style(Some(Direction::Promotes), 3, false);
        let strong = t.direction_style(Some(Direction::Promotes), 3, true);
        assert_eq!(
            faint.bg,
            Some(t.promote_faint),
            "unproven stays faint at any size"
        );
        assert_eq!(strong.bg, Some(t.promote_strong));
        let mid = t.direction_style(Some(Direction::Promotes), 1, true).bg;
        assert!(mid != strong.bg && mid != faint.bg, "{mid:?}");
        let purple = t.direction_style(Some(Direction::Suppresses), 3, true);
        assert_eq!(purple.bg, Some(t.suppress_strong));
        // Strong purple is dark: text turns white for contrast.
        assert_eq!(purple.fg, Some(Color::Rgb(255, 255, 255)));
        assert_eq!(t.direction_style(None, 3, true).bg, None);
        assert_eq!(
            t.direction_style(Some(Direction::Promotes), 0, true).bg,
            None
        );
    }

    #[test]
    fn no_color_strips_everything_and_overrides_apply() {
        let t = Theme::new(&ThemeOverrides::new(), true).unwrap();
        assert_eq!(
            t.direction_style(Some(Direction::Promotes), 3, true),
            Style::default()
        );
        let mut o = ThemeOverrides::new();
        o.insert(
            ThemeRole::try_from("promote_strong".to_string()).unwrap(),
            ThemeColor::try_from("#010203".to_string()).unwrap(),
        );
        assert_eq!(
            Theme::new(&o, false).unwrap().promote_strong,
            Color::Rgb(1, 2, 3)
        );
        assert!(ThemeRole::try_from("sparkle".to_string()).is_err());
        assert!(ThemeColor::try_from("#12".to_string()).is_err());
    }
}
