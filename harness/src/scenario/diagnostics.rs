//! Errors in a scenario's words: the deserializer's and the TOML parser's errors turned into
//! messages that name the key, the table and the line.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ScenarioError;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Turns an error of the deserializer into a [`ScenarioError::Syntax`] naming key, table and line.
/// The key path is the one `serde_path_to_error` followed to the error; the line is that of the
/// span the TOML deserializer gave it (none for the document as a whole, whose span is empty).
pub(super) fn shape_error(
    text: &str,
    origin: &str,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> ScenarioError {
    use serde_path_to_error::Segment;
    let raw = e.inner().message().trim_end();
    let line = e
        .inner()
        .span()
        .filter(|span| !span.is_empty())
        .map(|span| line_of(text, span.start));
    let path: Vec<Seg> = e
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect();

    let missing = raw
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'));
    if let Some(field) = missing {
        // The span is the table's own: name the table; its line is the header's.
        let mut full = path.clone();
        full.push(Seg::Key(field.to_owned()));
        let message = format!("missing key `{field}` {}", table_phrase(&path));
        return syntax(origin, line, Some(dotted(&full)), message);
    }

    let (table, leaf) = match path.split_last() {
        Some((Seg::Key(k), table)) => (table, Some(k.as_str())),
        _ => (&path[..], None),
    };
    let key = leaf.map(|_| dotted(&path));
    if let Some((field, expected)) = parse_unknown_field(raw) {
        let mut message = format!("unknown key `{field}` {}", table_phrase(table));
        if !expected.is_empty() {
            message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
        }
        return syntax(origin, line, key, message);
    }
    let raw = plain_words(raw);
    let message = match leaf {
        Some(k) => format!("bad value for `{k}` {}: {raw}", table_phrase(table)),
        None => raw,
    };
    syntax(origin, line, key, message)
}

/// Serde's wording, with Rust type names and "variant" put in a scenario writer's words.
fn plain_words(message: &str) -> String {
    let message = message.replace("unknown variant `", "unknown value `");
    if let Some(head) = message.strip_suffix("expected u32") {
        format!("{head}expected a whole number from 0 to {}", u32::MAX)
    } else if let Some(head) = message.strip_suffix("expected u64") {
        format!("{head}expected a whole number, 0 or more")
    } else {
        message
    }
}

/// A document that is not TOML: the parser's message, the line, and the line's text.
pub(super) fn toml_error(text: &str, origin: &str, e: &toml::de::Error) -> ScenarioError {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return syntax(origin, None, None, format!("invalid TOML: {message}"));
    };
    let line = line_of(text, span.start);
    let snippet = text.get(span.clone()).unwrap_or_default();
    let message = if message == "duplicate key" && !snippet.is_empty() {
        format!("duplicate key `{snippet}`: each key may appear once per table")
    } else {
        let source_line = text.lines().nth(line - 1).unwrap_or_default().trim();
        format!("invalid TOML: {message}: `{source_line}`")
    };
    syntax(origin, Some(line), None, message)
}

fn syntax(
    origin: &str,
    line: Option<usize>,
    key: Option<String>,
    message: String,
) -> ScenarioError {
    ScenarioError::Syntax {
        origin: origin.to_owned(),
        line,
        key,
        message,
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2) // the odd pieces are the names between backticks
        .collect();
    Some((field, expected))
}

/// "in [fleet]", "in [[variants]] #2", "at the top level".
fn table_phrase(table: &[Seg]) -> String {
    match table {
        [] => "at the top level".to_owned(),
        [prefix @ .., Seg::Index(i)] => format!("in [[{}]] #{}", dotted(prefix), i + 1),
        _ => format!("in [{}]", dotted(table)),
    }
}

/// `fleet.profile.mss`, `variants[1].name`.
pub(super) fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// 1-based line of byte offset `at` in `text`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The span of the key at `path` (its name), if the document has it.
pub(super) fn key_span(doc: &Spanned<DeTable<'_>>, path: &[Seg]) -> Option<Range<usize>> {
    let mut table = doc.get_ref();
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    let mut last_key = None;
    for seg in path {
        match seg {
            Seg::Key(name) => {
                if let Some(v) = value {
                    table = v.get_ref().as_table()?;
                }
                let (k, v) = table.iter().find(|(k, _)| k.get_ref() == name)?;
                last_key = Some(k.span());
                value = Some(v);
            }
            Seg::Index(i) => {
                value = Some(value?.get_ref().as_array()?.get(*i)?);
                last_key = None;
            }
        }
    }
    last_key
}
