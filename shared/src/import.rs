//! Streaming user import for the admin API: JSON lines or CSV, read as they arrive and
//! written in batches.
//!
//! The body is never held whole: complete lines are cut from the stream, parsed, and every
//! [`BATCH`] users go to [`UserAdmin::import_users`]. Bad lines are counted and the first
//! few reported with their line numbers; good lines around them are still imported. Users
//! already present are left alone, so re-sending a file adds nothing — an import cut off
//! halfway is resumed by sending it again.
//!
//! [`UserAdmin::import_users`]: crate::ports::admin::UserAdmin::import_users

use crate::admin::{ImportReport, NewUser};
use crate::ids::BotId;
use crate::ports::App;
use crate::problem::ApiError;
use axum::body::Body;
use futures::StreamExt;
use serde::Serialize;

/// Users written per store call.
pub const BATCH: usize = 1_000;
/// Longest line accepted.
pub const MAX_LINE: usize = 64 * 1024;
/// Bad lines reported back (all are counted).
const REPORTED: usize = 20;

/// The body's format, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: `{"platform":"tg","platform_id":"1","bm_id":"…"}`.
    JsonLines,
    /// A header line naming `platform`, `platform_id` and optionally `bm_id`, then rows.
    Csv,
}

impl Format {
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, ApiError> {
        let essence = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson"
            | "application/jsonl"
            | "application/json-lines"
            | "application/json" => Ok(Format::JsonLines),
            "text/csv" => Ok(Format::Csv),
            _ => Err(ApiError::UnsupportedMediaType {
                got: content_type.map(|c| {
                    format!("{c} (users are imported from application/x-ndjson or text/csv)")
                }),
            }),
        }
    }
}

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub struct ImportSummary {
    pub inserted: u64,
    pub existing: u64,
    pub rejected: u64,
    /// The first bad lines: `{"line": n, "error": "…"}`.
    pub errors: Vec<serde_json::Value>,
}

/// One user from a JSON line, or why not.
pub fn parse_json_line(line: &str) -> Result<NewUser, String> {
    let user: NewUser = serde_json::from_str(line).map_err(|e| e.to_string())?;
    checked(user)
}

/// The users of CSV lines, the first being the header, as an import reads them one line
/// at a time; Err when the header is not usable.
pub fn parse_csv_lines<'a>(
    mut lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<Result<NewUser, String>>, String> {
    let mut columns = CsvColumns::from_header(lines.next().unwrap_or_default())?;
    Ok(lines.map(|line| columns.user(line)).collect())
}

fn checked(user: NewUser) -> Result<NewUser, String> {
    match user.problem() {
        Some(problem) => Err(problem),
        None => Ok(user),
    }
}

/// Columns of a CSV import, from its header line, and the reader its rows go through.
struct CsvColumns {
    platform: usize,
    platform_id: usize,
    bm_id: Option<usize>,
    reader: CsvLineReader,
}

impl CsvColumns {
    fn from_header(line: &str) -> Result<CsvColumns, String> {
        let mut reader = CsvLineReader::default();
        let names = reader.fields(line)?;
        let find = |name: &str| names.iter().position(|n| n.trim() == name);
        match (find("platform"), find("platform_id")) {
            (Some(platform), Some(platform_id)) => Ok(CsvColumns {
                platform,
                platform_id,
                bm_id: find("bm_id"),
                reader,
            }),
            _ => Err(
                "the header line must name platform and platform_id (and may name bm_id)".into(),
            ),
        }
    }

    fn user(&mut self, line: &str) -> Result<NewUser, String> {
        let fields = self.reader.fields(line)?;
        let get = |i: usize| {
            fields
                .get(i)
                .cloned()
                .ok_or("a column is missing".to_string())
        };
        checked(NewUser {
            platform: get(self.platform)?,
            platform_id: get(self.platform_id)?,
            bm_id: match self.bm_id {
                Some(i) => Some(get(i)?).filter(|s| !s.is_empty()),
                None => None,
            },
        })
    }
}

/// RFC 4180 fields of one line at a time (quotes, doubled quotes, a trailing `\r`), by the
/// csv crate's own parser, `csv-core`. Building that parser costs more than parsing a line,
/// so each thread builds one once and resets it per line; the buffers are the import's.
#[derive(Default)]
struct CsvLineReader {
    output: Vec<u8>,
    ends: Vec<usize>,
}

thread_local! {
    // `Reader::new`, not `Reader::default`: only the builder prepares the parser's DFA
    // (and `Reader::clone` does not copy all of it).
    static PARSER: std::cell::RefCell<csv_core::Reader> =
        std::cell::RefCell::new(csv_core::Reader::new());
}

impl CsvLineReader {
    /// The first record of `line` (the rest after a bare `\r` is ignored, as the import's
    /// lines end at `\n`).
    fn fields(&mut self, line: &str) -> Result<Vec<String>, String> {
        use csv_core::ReadRecordResult;
        // Unquoting only shortens a line and a line of n bytes has at most n + 1 fields,
        // so neither buffer can fill.
        self.output.resize(line.len(), 0);
        self.ends.resize(line.len() + 1, 0);
        let (mut input, mut written, mut fields) = (line.as_bytes(), 0, 0);
        let result = PARSER.with_borrow_mut(|parser| {
            parser.reset();
            loop {
                let (result, _, wrote, ended) = parser.read_record(
                    input,
                    &mut self.output[written..],
                    &mut self.ends[fields..],
                );
                written += wrote;
                fields += ended;
                match result {
                    // The whole line was read: an empty input tells the parser it ended.
                    ReadRecordResult::InputEmpty => input = &[],
                    other => return other,
                }
            }
        });
        match result {
            ReadRecordResult::Record => self.collect(fields),
            ReadRecordResult::End => Ok(vec![]),
            _ => Err("the line could not be read as CSV".into()),
        }
    }

    fn collect(&self, fields: usize) -> Result<Vec<String>, String> {
        let mut start = 0;
        self.ends[..fields]
            .iter()
            .map(|&end| {
                let field = std::str::from_utf8(&self.output[start..end])
                    .map(str::to_string)
                    .map_err(|_| "a field is not UTF-8".to_string());
                start = end;
                field
            })
            .collect()
    }
}

/// Import `body` into `bot_id`'s users.
pub async fn stream(
    app: &App,
    bot_id: &BotId,
    format: Format,
    body: Body,
) -> Result<ImportSummary, ApiError> {
    let mut summary = ImportSummary::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut batch: Vec<NewUser> = Vec::with_capacity(BATCH);
    let mut columns: Option<CsvColumns> = None;
    let mut number: u64 = 0;
    let mut chunks = body.into_data_stream();
    let mut finished = false;
    while !finished {
        match chunks.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(_)) => {
                return Err(ApiError::BadHeader(
                    "the body stopped before its end; nothing after the last full batch was imported, send the file again to resume".into(),
                ))
            }
            None => {
                finished = true;
                if !pending.is_empty() && !pending.ends_with(b"\n") {
                    pending.push(b'\n');
                }
            }
        }
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let raw = &pending[start..start + end];
            start += end + 1;
            number += 1;
            let line = String::from_utf8_lossy(raw);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parsed = match (format, &mut columns) {
                (Format::JsonLines, _) => parse_json_line(line),
                (Format::Csv, None) => {
                    columns =
                        Some(CsvColumns::from_header(line).map_err(|message| {
                            ApiError::invalid(vec![("line 1".into(), message)])
                        })?);
                    continue;
                }
                (Format::Csv, Some(columns)) => columns.user(line),
            };
            match parsed {
                Ok(user) => batch.push(user),
                Err(message) => reject(&mut summary, number, &message),
            }
            if batch.len() >= BATCH {
                flush(app, bot_id, &mut batch, &mut summary).await?;
            }
        }
        pending.drain(..start);
        if pending.len() > MAX_LINE {
            number += 1;
            reject(&mut summary, number, "the line is over 64 KiB");
            pending.clear();
            // Skip the rest of that line.
            while let Some(Ok(chunk)) = chunks.next().await {
                if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                    pending.extend_from_slice(&chunk[end + 1..]);
                    break;
                }
            }
        }
    }
    flush(app, bot_id, &mut batch, &mut summary).await?;
    Ok(summary)
}

fn reject(summary: &mut ImportSummary, line: u64, message: &str) {
    summary.rejected += 1;
    if summary.errors.len() < REPORTED {
        summary
            .errors
            .push(serde_json::json!({ "line": line, "error": message }));
    }
}

async fn flush(
    app: &App,
    bot_id: &BotId,
    batch: &mut Vec<NewUser>,
    summary: &mut ImportSummary,
) -> Result<(), ApiError> {
    if batch.is_empty() {
        return Ok(());
    }
    let report: ImportReport = app.ports.admin.users.import_users(bot_id, batch).await?;
    summary.inserted += report.inserted;
    summary.existing += report.existing;
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_found_by_name_in_any_order() {
        let mut columns = CsvColumns::from_header("bm_id,platform_id,platform").unwrap();
        let user = columns.user("abc,\"42\",tg").unwrap();
        assert_eq!(
            (
                user.platform.as_str(),
                user.platform_id.as_str(),
                user.bm_id.as_deref()
            ),
            ("tg", "42", Some("abc"))
        );
        assert!(CsvColumns::from_header("id,name").is_err());
        assert!(columns.user("abc").is_err());
    }

    #[test]
    fn csv_lines_follow_rfc_4180_with_one_reader_for_every_line() {
        let mut reader = CsvLineReader::default();
        let mut fields = |line: &str| reader.fields(line).unwrap();
        assert_eq!(fields("a,b,c"), ["a", "b", "c"]);
        assert_eq!(
            fields(r#""x, y","say ""hi""",z"#),
            ["x, y", r#"say "hi""#, "z"]
        );
        assert_eq!(fields("a,,\r"), ["a", "", ""]);
        assert_eq!(fields("tg,42\rignored,after"), ["tg", "42"]);
        assert_eq!(fields(r#""unclosed,é"#), ["unclosed,é"]);
        assert_eq!(fields(" "), [" "]);
        assert_eq!(fields(""), Vec::<String>::new());
        assert_eq!(fields("ü,ß"), ["ü", "ß"]);
    }

    #[test]
    fn json_lines_are_checked() {
        assert!(parse_json_line(r#"{"platform":"tg","platform_id":7}"#).is_ok());
        assert!(parse_json_line(r#"{"platform":"any","platform_id":"7"}"#).is_err());
        assert!(parse_json_line(r#"{"platform":"bm","platform_id":"7"}"#).is_err());
        // No event request can target these, so no import takes them either.
        for platform in ["Telegram", "t g", "", &"x".repeat(33)] {
            let line = format!(r#"{{"platform":"{platform}","platform_id":"7"}}"#);
            assert!(parse_json_line(&line).is_err(), "{platform}");
        }
        assert!(parse_json_line(r#"{"platform":"tg"}"#).is_err());
        assert!(parse_json_line("not json").is_err());
    }
}
