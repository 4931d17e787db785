//! The tokenizer configuration file (TOML).
//!
//! ```toml
//! universe = "universe.bed.gz"          # relative to this file
//! tokenizer_type = "bits"               # or "ailist"; optional
//! special_tokens = [{ name = "unk", token = "<unk>" }]   # optional
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::io::read_to_string;

/// The seven special tokens, in id order after the universe regions.
pub const SPECIAL_NAMES: [&str; 7] = ["unk", "pad", "mask", "cls", "eos", "bos", "sep"];

/// Strings of the special tokens, indexed like [`SPECIAL_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens(pub [String; 7]);

impl Default for SpecialTokens {
    fn default() -> Self {
        SpecialTokens(SPECIAL_NAMES.map(|n| format!("<{n}>")))
    }
}

/// The overlap backend named in a config. Both give identical ids here: the index is
/// always the same exact one; the value is accepted for compatibility and written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerType {
    #[default]
    Bits,
    Ailist,
}

impl TokenizerType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenizerType::Bits => "bits",
            TokenizerType::Ailist => "ailist",
        }
    }
}

#[derive(Deserialize)]
struct RawSpecial {
    /// With its place in the file, for messages.
    name: toml::Spanned<String>,
    token: String,
}

#[derive(Deserialize)]
struct RawConfig {
    universe: String,
    #[serde(default)]
    special_tokens: Vec<RawSpecial>,
    #[serde(default)]
    tokenizer_type: TokenizerType,
}

/// A parsed configuration, with the universe path resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub universe: PathBuf,
    pub special_tokens: SpecialTokens,
    /// The 1-based line that sets each special token (0 for a default one).
    pub special_lines: [u64; SPECIAL_NAMES.len()],
    pub tokenizer_type: TokenizerType,
}

fn line_of(text: &str, offset: usize) -> u64 {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_to_string(path)?;
        let config_err = |line: u64, message: String| Error::Config {
            path: path.to_path_buf(),
            line,
            message,
        };
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            config_err(line, e.message().trim().to_string())
        })?;
        let mut special_tokens = SpecialTokens::default();
        let mut given = [false; SPECIAL_NAMES.len()];
        let mut special_lines = [0; SPECIAL_NAMES.len()];
        for s in raw.special_tokens {
            let line = line_of(&text, s.name.span().start);
            let name = s.name.into_inner();
            let Some(i) = SPECIAL_NAMES.iter().position(|&n| n == name) else {
                return Err(config_err(
                    line,
                    format!(
                        "unknown special token {:?} (expected one of {})",
                        name,
                        SPECIAL_NAMES.join(", ")
                    ),
                ));
            };
            if std::mem::replace(&mut given[i], true) {
                return Err(config_err(
                    line,
                    format!("special token {name:?} is given more than once"),
                ));
            }
            if s.token.is_empty() {
                return Err(config_err(line, format!("special token {name:?} is empty")));
            }
            special_tokens.0[i] = s.token;
            special_lines[i] = line;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Config {
            universe: base.join(raw.universe),
            special_tokens,
            special_lines,
            tokenizer_type: raw.tokenizer_type,
        })
    }

    /// The TOML text for this config, naming the universe file by `universe_name`.
    pub fn to_toml(&self, universe_name: &str) -> String {
        let mut s = format!(
            "universe = {}\ntokenizer_type = \"{}\"\nspecial_tokens = [\n",
            toml_string(universe_name),
            self.tokenizer_type.as_str()
        );
        for (name, token) in SPECIAL_NAMES.iter().zip(&self.special_tokens.0) {
            s.push_str(&format!(
                "    {{ name = \"{name}\", token = {} }},\n",
                toml_string(token)
            ));
        }
        s.push_str("]\n");
        s
    }
}

/// A TOML basic string with the needed escapes.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
