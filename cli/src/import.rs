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

struct Totals {
    inserted: u64,
    existing: u64,
    rejected: u64,
    errors: Vec<Value>,
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
    let size = std::fs::metadata(file).map(|m| m.len()).ok();
    let progress = if std::io::stderr().is_terminal() {
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
    } else {
        None
    };
    let path = format!("/v1/admin/bots/{}/users", segment(bot));
    let started = Instant::now();
    let mut totals = Totals {
        inserted: 0,
        existing: 0,
        rejected: 0,
        errors: Vec::new(),
    };
    let mut reader = read_input(file)?;
    let mut header: Option<String> = None;
    let mut line_number: u64 = 0;
    let mut sent_bytes: u64 = 0;
    loop {
        // One chunk: up to CHUNK_LINES lines, CSV chunks led by the header line.
        let first_line = line_number + 1;
        let mut chunk = Vec::with_capacity(CHUNK_LINES * 64);
        if let Some(header) = &header {
            chunk.extend_from_slice(header.as_bytes());
        }
        let mut lines = 0;
        let mut line = String::new();
        while lines < CHUNK_LINES {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 {
                break;
            }
            sent_bytes += read as u64;
            line_number += 1;
            if !line.ends_with('\n') {
                line.push('\n');
            }
            if format == Format::Csv && header.is_none() {
                header = Some(line.clone());
            } else {
                lines += 1;
            }
            chunk.extend_from_slice(line.as_bytes());
        }
        if lines == 0 {
            break;
        }
        let answer = client
            .send(Method::POST, &path, Some((chunk, format.content_type())))
            .await?;
        if !answer.status.is_success() {
            if let Some(bar) = &progress {
                bar.abandon();
            }
            return Ok(output::report(&answer, human));
        }
        let summary = answer.json();
        let count = |key: &str| summary[key].as_u64().unwrap_or(0);
        totals.inserted += count("inserted");
        totals.existing += count("existing");
        totals.rejected += count("rejected");
        // The server numbers lines within the chunk; CSV chunks after the first carry the
        // header again as their line 1.
        let shift = match (format, first_line) {
            (Format::Csv, 1) => 0,
            (Format::Csv, _) => first_line - 2,
            (Format::Jsonl, _) => first_line - 1,
        };
        for error in summary["errors"].as_array().into_iter().flatten() {
            if totals.errors.len() < LISTED {
                let line = error["line"].as_u64().unwrap_or(0) + shift;
                totals
                    .errors
                    .push(json!({"line": line, "error": error["error"]}));
            }
        }
        let rate = totals.inserted + totals.existing;
        match &progress {
            Some(bar) => {
                bar.set_position(sent_bytes);
                bar.set_message(format!("{rate} users"));
            }
            None => eprintln!(
                "herald: {line_number} lines read, {} users added, {} present, {} rejected ({:.0} users/s)",
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
