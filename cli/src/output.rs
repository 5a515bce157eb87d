//! What the CLI prints: the admin API's JSON as it is (the default, for scripts), or with
//! `--human` a table for lists and `key: value` lines for one document. Errors go to
//! stderr as the problem's title and detail, with exit code 1 (2: not found).

use crate::client::Answer;
use serde_json::Value;
use std::process::ExitCode;

/// Print a successful answer, or the problem of a failed one; the exit code to return.
pub fn report(answer: &Answer, human: bool) -> ExitCode {
    let document = answer.json();
    if !answer.status.is_success() {
        let title = document["title"].as_str().unwrap_or("error");
        let detail = document["detail"].as_str().unwrap_or("");
        eprintln!("herald: {} {title}: {detail}", answer.status.as_u16());
        if let Some(errors) = document["errors"].as_array() {
            for error in errors {
                eprintln!(
                    "  {}: {}",
                    error["field"].as_str().unwrap_or(""),
                    error["message"].as_str().unwrap_or("")
                );
            }
        }
        return if answer.status.as_u16() == 404 {
            ExitCode::from(2)
        } else {
            ExitCode::FAILURE
        };
    }
    print(&document, human);
    ExitCode::SUCCESS
}

/// Print `document` as JSON, or readably.
pub fn print(document: &Value, human: bool) {
    if !human {
        if !document.is_null() {
            println!(
                "{}",
                serde_json::to_string_pretty(document).unwrap_or_default()
            );
        }
        return;
    }
    match document {
        Value::Object(object) => {
            // A list document ({"bots": [...]}) is a table; anything else key: value lines.
            let list = object
                .iter()
                .find(|(_, v)| v.as_array().is_some_and(|a| a.iter().all(Value::is_object)));
            match list {
                Some((_, Value::Array(rows))) if object.len() <= 2 => table(rows),
                _ => {
                    for (key, value) in object {
                        println!("{key}: {}", cell(value));
                    }
                }
            }
        }
        Value::Null => {}
        other => println!("{}", cell(other)),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 60 {
                format!("{}…", text.chars().take(59).collect::<String>())
            } else {
                text
            }
        }
    }
}

fn table(rows: &[Value]) {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        println!("(none)");
        return;
    };
    let columns: Vec<&String> = first.keys().collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[c.as_str()])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for row in cells {
        println!("{}", line(row));
    }
}
