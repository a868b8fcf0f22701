//! Error locations in suite files (the TOML schema of the Wang et al., arXiv 1910.02673 benchmark runs): every
//! message names the file, the key and its line.
use crate::error::Error;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The 1-based line of byte `offset` of `src`.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A suite file's path and text, to turn problems into errors that point at a line.
pub struct Locator<'a> {
    pub path: &'a Path,
    pub src: &'a str,
}

/// The name of a table header line (`[a.b]` -> `a.b`, `[[attack]]` -> `attack`), if the line is one.
fn header(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.split('#').next().unwrap_or("").trim();
    let inner =
        t.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")).or_else(|| t.strip_prefix('[')?.strip_suffix(']'))?;
    Some(inner.trim())
}

impl<'a> Locator<'a> {
    /// An error at `line` (when known) about `key`.
    pub fn error_line(&self, line: Option<usize>, key: &str, msg: &str) -> Error {
        let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        let key = if key.is_empty() { String::new() } else { format!("key `{key}`: ") };
        Error::format(self.path, format!("{at}{key}{msg}"))
    }

    /// Lines (1-based) of the `nth` table named `section` (`attack` for the nth `[[attack]]`): its header line and the
    /// lines up to the next table that is not one of its sub-tables.
    fn section_lines(&self, section: &str, nth: usize) -> Option<(usize, Vec<(usize, &'a str)>)> {
        let lines: Vec<&str> = self.src.lines().collect();
        let start = lines.iter().enumerate().filter(|(_, l)| header(l) == Some(section)).nth(nth).map(|(i, _)| i)?;
        let sub = format!("{section}.");
        let body = lines[start + 1..]
            .iter()
            .enumerate()
            .take_while(|(_, l)| header(l).is_none_or(|h| h.starts_with(&sub)))
            .map(|(i, l)| (start + 2 + i, *l))
            .collect();
        Some((start + 1, body))
    }

    /// The line of `key = ...` inside the `nth` table `section`, else the table's header line.
    pub fn key_line(&self, section: &str, nth: usize, key: Option<&str>) -> Option<usize> {
        let (head, body) = self.section_lines(section, nth)?;
        let Some(key) = key else { return Some(head) };
        let found = body.iter().find(|(_, l)| {
            let mut rest = l.trim_start();
            while let Some(p) = rest.find(key) {
                let after = rest[p + key.len()..].trim_start();
                let word_start =
                    p == 0 || !rest.as_bytes()[p - 1].is_ascii_alphanumeric() && rest.as_bytes()[p - 1] != b'_';
                if word_start && (after.starts_with('=') || after.starts_with('.')) {
                    return true;
                }
                rest = &rest[p + key.len()..];
            }
            false
        });
        Some(found.map_or(head, |(n, _)| *n))
    }

    /// An error about `key` (or the whole table) of the `nth` table named `section`.
    pub fn error_section(&self, section: &str, nth: usize, key: Option<&str>, msg: &str) -> Error {
        let section = section.trim_matches(|c| c == '[' || c == ']');
        let full_key = match key {
            Some(k) => format!("{section}.{k}"),
            None => section.to_string(),
        };
        let msg = if section == "attack" { format!("[[attack]] #{}: {msg}", nth + 1) } else { msg.to_string() };
        self.error_line(self.key_line(section, nth, key), &full_key, &msg)
    }

    /// Deserialises a table of the file into `T`; an unknown or invalid key is reported with its line.
    pub fn typed<T: DeserializeOwned>(&self, table: toml::Table, section: &str, nth: usize) -> crate::error::Result<T> {
        // for an unknown value (serde's "unknown variant"), the key that holds it
        let strings: Vec<(String, String)> =
            table.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect();
        // for a value of the wrong type or range, the key whose value the message quotes as serde writes it
        let rendered: Vec<(String, String)> = table
            .iter()
            .filter_map(|(k, v)| {
                let r = match v {
                    toml::Value::String(s) => format!("string \"{s}\""),
                    toml::Value::Integer(i) => format!("`{i}`"),
                    toml::Value::Float(f) => format!("`{f}`"),
                    toml::Value::Boolean(b) => format!("`{b}`"),
                    _ => return None,
                };
                Some((k.clone(), r))
            })
            .collect();
        toml::Value::Table(table).try_into::<T>().map_err(|e| {
            let msg = e.message().trim().to_string();
            let quoted = msg.split('`').nth(1).unwrap_or("");
            let key = if msg.starts_with("unknown field") && !quoted.contains(' ') {
                Some(quoted)
            } else if msg.starts_with("unknown variant") {
                strings.iter().find(|(_, v)| v == quoted).map(|(k, _)| k.as_str())
            } else if msg.starts_with("invalid") {
                let found: Vec<&str> =
                    rendered.iter().filter(|(_, r)| msg.contains(r.as_str())).map(|(k, _)| k.as_str()).collect();
                // only when one key holds that value, or the line would be a guess
                if found.len() == 1 {
                    Some(found[0])
                } else {
                    None
                }
            } else {
                None
            };
            self.error_section(section, nth, key, &msg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_the_right_table() {
        let src = "[suite]\nname = \"x\"\n\n[[attack]]\nname = \"fgsm\"\n[[attack]]\nname = \"pgd\"\nstepz = 3\n[detectors]\nnames = [\"msp\"]\n";
        let loc = Locator { path: Path::new("s.toml"), src };
        assert_eq!(loc.key_line("attack", 1, Some("stepz")), Some(8));
        assert_eq!(loc.key_line("attack", 0, Some("stepz")), Some(4));
        assert_eq!(loc.key_line("detectors", 0, Some("names")), Some(10));
        assert_eq!(line_of(src, 0), 1);
    }
}
