//! `herald users import`: a file of users sent to the admin API in chunks, with progress.
//!
//! The file is read line by line and sent [`CHUNK_LINES`] lines per request (the server
//! streams each chunk into batched writes). On a terminal an indicatif bar shows bytes,
//! rate and ETA; otherwise one plain line per chunk goes to stderr. Users already present
//! are left alone by the server, so running the same import again — after an interruption,
//! say — adds only what is missing. Rejected lines are reported with their line numbers in
//! the file.

use crate::client::{segment, Client};
use crate::commands::read_input;
use crate::output;
use axum::http::Method;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Lines per request.
pub const CHUNK_LINES: usize = 10_000;
/// Rejected lines listed in the summary (all are counted).
const LISTED: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv",
        }
    }
}

#[derive(Default)]
struct Totals {
    inserted: u64,
    existing: u64,
    rejected: u64,
    errors: Vec<Value>,
}

impl Totals {
    /// Add one chunk's summary; its line numbers are the chunk's, `first_line` the file's
    /// number of the chunk's first line.
    fn add(&mut self, summary: &Value, format: Format, first_line: u64) {
        let count = |key: &str| summary[key].as_u64().unwrap_or(0);
        self.inserted += count("inserted");
        self.existing += count("existing");
        self.rejected += count("rejected");
        // The server numbers lines within the chunk; CSV chunks after the first carry the
        // header again as their line 1.
        let shift = match (format, first_line) {
            (Format::Csv, 1) => 0,
            (Format::Csv, _) => first_line - 2,
            (Format::Jsonl, _) => first_line - 1,
        };
        for error in summary["errors"].as_array().into_iter().flatten() {
            if self.errors.len() < LISTED {
                let line = error["line"].as_u64().unwrap_or(0) + shift;
                self.errors
                    .push(json!({"line": line, "error": error["error"]}));
            }
        }
    }
}

/// The file's lines cut into chunks of up to [`CHUNK_LINES`], CSV chunks led by the
/// header line.
struct Chunks {
    reader: Box<dyn BufRead>,
    format: Format,
    header: Option<String>,
    line_number: u64,
    sent_bytes: u64,
}

impl Chunks {
    /// The next chunk and the file's number of its first line; None at the end.
    fn next(&mut self) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        let first_line = self.line_number + 1;
        let mut chunk = Vec::with_capacity(CHUNK_LINES * 64);
        if let Some(header) = &self.header {
            chunk.extend_from_slice(header.as_bytes());
        }
        let mut lines = 0;
        let mut line = String::new();
        while lines < CHUNK_LINES {
            line.clear();
            let read = self.reader.read_line(&mut line)?;
            if read == 0 {
                break;
            }
            self.sent_bytes += read as u64;
            self.line_number += 1;
            if !line.ends_with('\n') {
                line.push('\n');
            }
            if self.format == Format::Csv && self.header.is_none() {
                self.header = Some(line.clone());
            } else {
                lines += 1;
            }
            chunk.extend_from_slice(line.as_bytes());
        }
        Ok((lines > 0).then_some((chunk, first_line)))
    }
}

pub async fn run(
    client: &Client,
    bot: &str,
    format: Option<Format>,
    file: &Path,
    human: bool,
) -> anyhow::Result<ExitCode> {
    let format = format.unwrap_or_else(|| {
        if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Format::Csv
        } else {
            Format::Jsonl
        }
    });
    let progress = progress_bar(file);
    let path = format!("/v1/admin/bots/{}/users", segment(bot));
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut chunks = Chunks {
        reader: read_input(file)?,
        format,
        header: None,
        line_number: 0,
        sent_bytes: 0,
    };
    while let Some((chunk, first_line)) = chunks.next()? {
        let answer = client
            .send(Method::POST, &path, Some((chunk, format.content_type())))
            .await?;
        if !answer.status.is_success() {
            if let Some(bar) = &progress {
                bar.abandon();
            }
            return Ok(output::report(&answer, human));
        }
        totals.add(&answer.json(), format, first_line);
        let rate = totals.inserted + totals.existing;
        match &progress {
            Some(bar) => {
                bar.set_position(chunks.sent_bytes);
                bar.set_message(format!("{rate} users"));
            }
            None => eprintln!(
                "herald: {} lines read, {} users added, {} present, {} rejected ({:.0} users/s)",
                chunks.line_number,
                totals.inserted,
                totals.existing,
                totals.rejected,
                rate as f64 / started.elapsed().as_secs_f64().max(0.001)
            ),
        }
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    output::print(
        &json!({
            "inserted": totals.inserted,
            "existing": totals.existing,
            "rejected": totals.rejected,
            "errors": totals.errors,
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }),
        human,
    );
    Ok(if totals.rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// A progress bar over the file's bytes when stderr is a terminal (a spinner for stdin).
fn progress_bar(file: &Path) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let size = std::fs::metadata(file).map(|m| m.len()).ok();
    let bar = match size {
        Some(size) if file.as_os_str() != "-" => ProgressBar::new(size),
        _ => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}
