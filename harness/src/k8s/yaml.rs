//! YAML text of JSON values, in the block style `kubectl get -o yaml` writes: keys in sorted
//! order (a `serde_json::Map`'s), maps indented by two, lists at their key's indentation;
//! strings plain where no YAML 1.1 reader (PyYAML, which kubernetes-validate uses) can take
//! them for anything else, double-quoted otherwise, and text of several lines as a literal
//! block (`|`). Pure: the manifests are built as `serde_json::Value`s.
//!
//! Written here rather than with `serde_norway` (serde_yaml's maintained fork, 0.9.42): it
//! writes `on`, `yes`, `no`, `y` and `1:30` unquoted, which YAML 1.1 readers (PyYAML, and
//! go-yaml v2 under `kubectl`) read as a boolean or the number 90.

use serde_json::Value;

/// Documents as one YAML stream, `---` between them, ending in a newline.
pub fn documents(values: &[Value]) -> String {
    values
        .iter()
        .map(document)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One YAML document, ending in a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(&mut out, items, 0),
        scalar => {
            let (header, body) = scalar_text(scalar, 0);
            out.push_str(&header);
            out.push('\n');
            out.push_str(&body);
        }
    }
    out
}

/// A map's entries at `indent`, each on lines of its own.
fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string_scalar(key));
        out.push(':');
        write_value_after(out, value, indent);
    }
}

/// A list's items at `indent`, each after `- `; an item that is a map starts on the dash's line.
fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry shares the dash's line; the others line up under it.
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_list(out, inner, indent + 2);
            }
            scalar => {
                let (header, body) = scalar_text(scalar, indent + 2);
                out.push(' ');
                out.push_str(&header);
                out.push('\n');
                out.push_str(&body);
            }
        }
    }
}

/// What follows `key:`: a nested block on the next lines, or ` scalar` on this one.
fn write_value_after(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        // Lists sit at their key's indentation, as kubectl writes them.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, indent);
        }
        scalar => {
            let (header, body) = scalar_text(scalar, indent + 2);
            out.push(' ');
            out.push_str(&header);
            out.push('\n');
            out.push_str(&body);
        }
    }
}

/// A scalar (or an empty map or list): the text on its key's line and, for a literal block,
/// the lines below it indented by `indent`.
fn scalar_text(value: &Value, indent: usize) -> (String, String) {
    match value {
        Value::Null => ("null".to_owned(), String::new()),
        Value::Bool(b) => (b.to_string(), String::new()),
        Value::Number(n) => (n.to_string(), String::new()),
        Value::String(s) => match literal_block(s, indent) {
            Some(block) => block,
            None => (string_scalar(s), String::new()),
        },
        Value::Array(_) => ("[]".to_owned(), String::new()),
        Value::Object(_) => ("{}".to_owned(), String::new()),
    }
}

/// Words a YAML 1.1 reader takes for a boolean or null when written plain.
const RESERVED: [&str; 22] = [
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "nan", "inf", ".nan", ".inf",
    "-.inf", "+.inf", "<<", "=", "-", "?", ":", "",
];

/// A string on one line: plain when it is made of letters, digits and `_ . / - @ :` (no `:` at
/// the end, where it would make a key) and cannot be read as a number, date, boolean or null;
/// else double-quoted.
fn string_scalar(s: &str) -> String {
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '@' | ':'))
        && !s.ends_with(':');
    // A leading digit, sign or dot may make a number (1_000, .5, 0x1f, -1) or a date
    // (2026-12-01); dashes before a letter (`--shard`) make a plain word.
    let plain_start = s.trim_start_matches('-').chars().next().is_some_and(|c| {
        c.is_ascii_alphabetic() || ((c == '/' || c == '_') && !s.starts_with('-'))
    });
    if plain_chars && plain_start && !RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        s.to_owned()
    } else {
        double_quoted(s)
    }
}

/// A double-quoted YAML scalar: printable ASCII as it is, everything else escaped.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Text of several lines as a literal block (`|`), when every character may stand in one as it
/// is and its first line starts with no blank (which would need an indentation indicator): the
/// header, with the chomping that keeps the text's trailing newlines exactly, and the lines
/// indented by `indent`.
fn literal_block(s: &str, indent: usize) -> Option<(String, String)> {
    let printable = s.chars().all(|c| c == '\n' || c == '\t' || in_block(c));
    let first_line = s.lines().find(|l| !l.is_empty()).unwrap_or_default();
    if !s.contains('\n') || !printable || first_line.starts_with([' ', '\t']) {
        return None;
    }
    let content = s.trim_end_matches('\n');
    let chomping = match s.len() - content.len() {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let lines: Vec<&str> = s.split('\n').collect();
    // The text after the last newline is empty when the text ends in one; it is no line.
    let lines = match lines.split_last() {
        Some((&"", rest)) => rest,
        _ => &lines[..],
    };
    let indent = " ".repeat(indent.max(2));
    let mut body = String::new();
    for line in lines {
        if !line.is_empty() {
            body.push_str(&indent);
            body.push_str(line);
        }
        body.push('\n');
    }
    Some((format!("|{chomping}"), body))
}

/// Whether `c` may stand as it is in a literal block: what YAML 1.1 calls printable, less
/// the characters it reads as line breaks (NEL, LS, PS) and the byte-order mark.
fn in_block(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn maps_and_lists_nest_as_manifests_are_written() {
        let value = json!({
            "apiVersion": "batch/v1",
            "metadata": {"name": "fleet", "labels": {"app.kubernetes.io/name": "fleetbench"}},
            "spec": {
                "completions": 10,
                "containers": [{"name": "fleet", "args": ["fleet", "--shard", "$(JOB_COMPLETION_INDEX)/10"]}],
                "empty": {},
                "none": [],
            }
        });
        let expected = "\
apiVersion: batch/v1
metadata:
  labels:
    app.kubernetes.io/name: fleetbench
  name: fleet
spec:
  completions: 10
  containers:
  - args:
    - fleet
    - --shard
    - \"$(JOB_COMPLETION_INDEX)/10\"
    name: fleet
  empty: {}
  none: []
";
        assert_eq!(document(&value), expected);
    }

    #[test]
    fn strings_a_yaml_reader_would_take_for_something_else_are_quoted() {
        for (text, written) in [
            ("yes", "\"yes\""),
            ("No", "\"No\""),
            ("null", "\"null\""),
            ("1883", "\"1883\""),
            ("100m", "\"100m\""),
            ("2026-12-01", "\"2026-12-01\""),
            (".5", "\".5\""),
            ("-1", "\"-1\""),
            ("--", "\"--\""),
            ("- x", "\"- x\""),
            ("--shard", "--shard"),
            ("a: b", "\"a: b\""),
            ("key:", "\"key:\""),
            (
                "registry.example/fleetbench:1",
                "registry.example/fleetbench:1",
            ),
            ("a #b", "\"a #b\""),
            ("", "\"\""),
            ("say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""),
            ("é", "\"\\u00E9\""),
            ("😀", "\"\\U0001F600\""),
            ("ReadWriteMany", "ReadWriteMany"),
            ("/etc/fleetbench", "/etc/fleetbench"),
            ("fleetbench.dev/sizing", "fleetbench.dev/sizing"),
        ] {
            assert_eq!(string_scalar(text), written, "{text:?}");
        }
    }

    #[test]
    fn text_of_several_lines_is_a_literal_block_keeping_its_trailing_newlines() {
        let doc = |s: &str| document(&json!({ "data": { "f": s } }));
        assert_eq!(
            doc("name = \"x\"\n\n[fleet]\n"),
            "data:\n  f: |\n    name = \"x\"\n\n    [fleet]\n"
        );
        assert_eq!(doc("a\nb"), "data:\n  f: |-\n    a\n    b\n");
        assert_eq!(doc("a\n\n"), "data:\n  f: |+\n    a\n\n");
        // A first line that starts with a blank is quoted too: a block would need an
        // indentation indicator.
        assert_eq!(doc("  indented\nnot"), "data:\n  f: \"  indented\\nnot\"\n");
        assert_eq!(doc("63 µs\n"), "data:\n  f: |\n    63 µs\n");
        // A carriage return or a line separator cannot stand in a block: the text is quoted.
        assert_eq!(doc("a\u{2028}\nb"), "data:\n  f: \"a\\u2028\\nb\"\n");
        assert_eq!(doc("a\r\nb"), "data:\n  f: \"a\\r\\nb\"\n");
    }

    #[test]
    fn documents_are_separated_by_three_dashes() {
        let text = documents(&[json!({"kind": "Deployment"}), json!({"kind": "Service"})]);
        assert_eq!(text, "kind: Deployment\n---\nkind: Service\n");
    }
}
