//! Reading a detector's scores from a CSV file with a header and the columns `label` (1 = adversarial, 0 = clean) and
//! `score`, so scores from any detector can go through the metrics of Wang, Hu, Su (arXiv 1910.02673).
use crate::error::Error;
use rayon::prelude::*;
use std::path::Path;

/// Labels (true = adversarial) and scores, one per data row in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledScores {
    pub labels: Vec<bool>,
    pub scores: Vec<f64>,
}

/// Reads `path`. Columns are found by header name (case-insensitive, any order, extra columns ignored); blank lines
/// are skipped. Every error names the file, and the line where there is one: a missing column, a label other than
/// 0/1, a score that is not a finite number, an empty file, or only one class.
pub fn read_scores(path: &Path) -> crate::Result<LabeledScores> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_scores(path, &bytes)
}

/// [`read_scores`] on the file's bytes; `path` only names the source in errors. Large inputs are parsed in chunks
/// on the rayon pool (chunks end at line breaks, results are joined in file order).
pub fn parse_scores(path: &Path, bytes: &[u8]) -> crate::Result<LabeledScores> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let bad = |offset: usize, problem: String| {
        let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::format(path, format!("line {line}: {problem}"))
    };
    let mut start = 0;
    let (header_start, header) = loop {
        if start >= bytes.len() {
            return Err(Error::format(path, "empty file: expected a header line with the columns label,score"));
        }
        let end = line_end(bytes, start);
        let line = trim_cr(&bytes[start..end]);
        if !line.iter().all(u8::is_ascii_whitespace) {
            break (start, std::str::from_utf8(line).map_err(|_| bad(start, "the header is not UTF-8 text".into()))?);
        }
        start = end + 1;
    };
    let body = (line_end(bytes, header_start) + 1).min(bytes.len());
    let names: Vec<&str> = header.split(',').map(unquote_str).collect();
    let column = |name: &str| header_column(&names, name, header, "").map_err(|p| bad(header_start, p));
    let cols = Columns { label: column("label")?, score: column("score")? };
    let text = std::str::from_utf8(bytes).map_err(|e| bad(e.valid_up_to(), "the line is not UTF-8 text".into()))?;
    let chunk_len = (bytes.len() / (8 * rayon::current_num_threads())).max(1 << 18);
    let mut chunks = Vec::new();
    let mut at = body;
    while at < bytes.len() {
        let end = if at + chunk_len >= bytes.len() { bytes.len() } else { line_end(bytes, at + chunk_len) };
        chunks.push((at, end));
        at = end + 1;
    }
    let parsed: Vec<_> = chunks.par_iter().map(|&(s, e)| parse_chunk(text, s, e, cols)).collect();
    let mut out =
        LabeledScores { labels: Vec::with_capacity(bytes.len() / 16), scores: Vec::with_capacity(bytes.len() / 16) };
    for chunk in parsed {
        let (labels, scores) = chunk.map_err(|(offset, problem)| bad(offset, problem))?;
        out.labels.extend(labels);
        out.scores.extend(scores);
    }
    let n_adv = out.labels.iter().filter(|&&l| l).count();
    let n_clean = out.labels.len() - n_adv;
    if out.labels.is_empty() {
        return Err(Error::format(path, "no data rows after the header"));
    }
    if n_adv == 0 || n_clean == 0 {
        let (have, missing) =
            if n_adv == 0 { ("0 (clean)", "1 (adversarial)") } else { ("1 (adversarial)", "0 (clean)") };
        return Err(Error::format(
            path,
            format!(
                "all {} rows have label {have}: both classes are needed, add rows with label {missing}",
                out.labels.len()
            ),
        ));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Columns {
    label: usize,
    score: usize,
}

/// The rows of `bytes[start..end]` (whole lines), or the byte offset of the first bad line and what is wrong with it.
type Chunk = Result<(Vec<bool>, Vec<f64>), (usize, String)>;

fn parse_chunk(text: &str, start: usize, end: usize, cols: Columns) -> Chunk {
    let width = cols.label.max(cols.score) + 1;
    let (mut labels, mut scores) = (Vec::with_capacity((end - start) / 16), Vec::with_capacity((end - start) / 16));
    let mut at = start;
    while at < end {
        let stop = text[at..end].find('\n').map_or(end, |p| at + p);
        let line = &text[at..stop];
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.bytes().all(|b| b.is_ascii_whitespace()) {
            // a byte loop: fields are short, and str::split's searcher costs more per field than it saves
            let (mut label, mut score, mut seen, mut from) = ("", "", 0, 0);
            while seen < width {
                let stop = line.as_bytes()[from..].iter().position(|&b| b == b',').map_or(line.len(), |p| from + p);
                if seen == cols.label {
                    label = unquote_str(&line[from..stop]);
                }
                if seen == cols.score {
                    score = unquote_str(&line[from..stop]);
                }
                seen += 1;
                if stop == line.len() {
                    break;
                }
                from = stop + 1;
            }
            if seen < width {
                return Err((at, format!("{seen} field(s), expected at least {width} (columns label and score)")));
            }
            labels.push(match label.as_bytes() {
                b"1" => true,
                b"0" => false,
                _ => match label.parse::<f64>() {
                    Ok(1.0) => true,
                    Ok(0.0) => false,
                    _ => return Err((at, format!("label `{label}` is not 0 (clean) or 1 (adversarial)"))),
                },
            });
            match score.parse::<f64>() {
                Ok(v) if v.is_finite() => scores.push(v),
                Ok(_) => return Err((at, format!("score `{score}` is not finite"))),
                Err(_) => return Err((at, format!("score `{score}` is not a number"))),
            }
        }
        at = stop + 1;
    }
    Ok((labels, scores))
}

/// The index of the line break ending the line that starts at `from`, or the length when it is the last line.
fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| from + p)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The index of the header column `name` (case-insensitive), or what is wrong: missing (`hint` appended) or repeated.
fn header_column(names: &[&str], name: &str, header: &str, hint: &str) -> Result<usize, String> {
    let hits: Vec<usize> = (0..names.len()).filter(|&k| names[k].eq_ignore_ascii_case(name)).collect();
    match hits[..] {
        [k] => Ok(k),
        [] => Err(format!("no column `{name}` in the header `{header}`{hint}")),
        _ => Err(format!("the column `{name}` appears {} times in the header", hits.len())),
    }
}

/// A field without surrounding blanks and double quotes.
fn unquote_str(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"').and_then(|f| f.strip_suffix('"')).map(str::trim).unwrap_or(f)
}

/// Labels and two detectors' scores of the same images (`advdet roc --paired`), one per data row in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedScores {
    pub labels: Vec<bool>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

/// Reads a CSV with a header and the columns `label` (1 = adversarial, 0 = clean), `score_a` and `score_b` (found by
/// name, any order, extra columns ignored; blank lines skipped). Every error names the file and the line: a missing
/// column, a row without all three fields, a label other than 0/1, a score that is not a finite number, no data rows,
/// or one class only.
pub fn read_paired(path: &Path) -> crate::Result<PairedScores> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes))
        .map_err(|e| Error::format(path, format!("not UTF-8 text (byte {})", e.valid_up_to())))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((h, header)) = lines.next() else {
        return Err(Error::format(path, "empty file: expected a header line with the columns label,score_a,score_b"));
    };
    let bad = |line: usize, problem: String| Error::format(path, format!("line {}: {problem}", line + 1));
    let names: Vec<&str> = header.split(',').map(unquote_str).collect();
    let column =
        |name: &str| header_column(&names, name, header, " (expected label,score_a,score_b)").map_err(|p| bad(h, p));
    let cols = [column("label")?, column("score_a")?, column("score_b")?];
    let width = cols.iter().max().map_or(0, |m| m + 1);
    let mut out = PairedScores { labels: Vec::new(), a: Vec::new(), b: Vec::new() };
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(unquote_str).collect();
        if fields.len() < width {
            return Err(bad(
                i,
                format!("{} field(s), expected at least {width} (label, score_a, score_b)", fields.len()),
            ));
        }
        out.labels.push(match fields[cols[0]].parse::<f64>() {
            Ok(1.0) => true,
            Ok(0.0) => false,
            _ => return Err(bad(i, format!("label `{}` is not 0 (clean) or 1 (adversarial)", fields[cols[0]]))),
        });
        for (k, dest) in [(cols[1], &mut out.a), (cols[2], &mut out.b)] {
            match fields[k].parse::<f64>() {
                Ok(v) if v.is_finite() => dest.push(v),
                Ok(_) => return Err(bad(i, format!("{} `{}` is not finite", names[k], fields[k]))),
                Err(_) => return Err(bad(i, format!("{} `{}` is not a number", names[k], fields[k]))),
            }
        }
    }
    let n_adv = out.labels.iter().filter(|&&l| l).count();
    if out.labels.is_empty() {
        return Err(Error::format(path, "no data rows after the header"));
    }
    if n_adv == 0 || n_adv == out.labels.len() {
        let have = if n_adv == 0 { "0 (clean)" } else { "1 (adversarial)" };
        return Err(Error::format(
            path,
            format!("all {} rows have label {have}: both classes are needed", out.labels.len()),
        ));
    }
    Ok(out)
}
