//! The settings table (`herald_core::settings`) is what the code, the flags, `template.yaml`
//! and the docs say: a setting cannot be read by one runtime and silently not the other.

use herald_core::settings::{Runtime, AWS_ONLY, SERVE_ONLY, SHARED};
use std::collections::BTreeSet;
use std::process::Command;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `HERALD_*` name in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("HERALD_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        found.insert(name);
    }
    found
}

#[test]
fn herald_serve_reads_the_shared_settings_and_its_own_and_nothing_else() {
    let help = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    // The variable each flag reads, as clap prints it: `[env: NAME=]`.
    let read: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            // `NAME=]`, or `NAME]` for a value hidden from the help.
            let end = rest.find(['=', ']']).unwrap();
            rest[..end].to_string()
        })
        .collect();
    let expected: BTreeSet<String> = SHARED
        .iter()
        .map(|s| s.var)
        .chain(SERVE_ONLY.iter().copied())
        // The admin token's variable, which the CLI's client commands read too.
        .chain(["HERALD_ADMIN_TOKEN"])
        .map(String::from)
        .collect();
    assert_eq!(read, expected, "herald serve --help");
    for setting in SHARED {
        assert!(
            help.contains(&format!("--{} <VALUE>", setting.flag)),
            "--{}",
            setting.flag
        );
    }
}

#[test]
fn template_yaml_sets_only_what_the_functions_read() {
    let set = variables(&repo_file("template.yaml"));
    let readable: BTreeSet<String> = SHARED
        .iter()
        .map(|s| s.var)
        .chain(AWS_ONLY.iter().copied())
        .map(String::from)
        .collect();
    let unread: Vec<_> = set.difference(&readable).collect();
    assert!(
        unread.is_empty(),
        "template.yaml sets {unread:?}, which no function reads"
    );
    // …and the functions' code reads each name of their own list.
    let code = [
        "adapters/aws/src/settings.rs",
        "functions/api/src/lib.rs",
        "functions/worker/src/lib.rs",
    ]
    .map(repo_file)
    .concat();
    for var in AWS_ONLY {
        assert!(
            code.contains(&format!("\"{var}\"")),
            "{var} is read nowhere"
        );
    }
}

#[test]
fn the_docs_table_states_every_shared_setting_with_its_defaults() {
    let docs = repo_file("docs/operating.md");
    for setting in SHARED {
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", setting.var)))
            .unwrap_or_else(|| panic!("{} has no row in docs/operating.md", setting.var));
        assert!(row.contains(&format!("`--{}`", setting.flag)), "{row}");
        let (serve, aws) = (
            setting.default_for(Runtime::Serve),
            setting.default_for(Runtime::Aws),
        );
        let default = match (serve, aws) {
            (None, None) => "none".to_string(),
            (Some(s), Some(a)) if s == a => s.to_string(),
            (s, a) => format!("{} / {}", s.unwrap_or("none"), a.unwrap_or("none")),
        };
        let default_cell = row.split('|').nth(3).unwrap().trim().trim_matches('`');
        assert_eq!(default_cell, default, "{}", setting.var);
    }
    let documented = variables(&docs);
    for var in SERVE_ONLY.iter().chain(AWS_ONLY) {
        assert!(
            documented.contains(*var),
            "{var} is not in docs/operating.md"
        );
    }
}

/// `herald serve` with `args` and exactly the environment `vars`: it must stop on its own,
/// refusing to start; its exit code and what it printed, and whether it opened the database.
fn refused_start(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .arg("--db")
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A start that is not refused serves until stopped: give up on it rather than hang.
    let mut waited = 0;
    while child.try_wait().unwrap().is_none() {
        if waited == 600 {
            child.kill().unwrap();
            panic!("herald serve {args:?} with {vars:?} started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    let out = child.wait_with_output().unwrap();
    let printed =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), printed, db.exists())
}

#[test]
fn herald_serve_refuses_a_variable_only_the_aws_functions_read() {
    let (code, printed, opened) = refused_start(&[], &[("HERALD_USERS_TABLE", "users")]);
    assert_ne!(code, Some(0), "{printed}");
    assert!(
        code.is_some(),
        "it exited rather than being killed: {printed}"
    );
    assert!(printed.contains("HERALD_USERS_TABLE"), "{printed}");
    assert!(printed.contains("AWS"), "says who reads it: {printed}");
    assert!(!opened, "refused before the database was opened");
}

#[test]
fn herald_serve_refuses_a_setting_out_of_its_range_by_flag_or_variable() {
    let at_least_one = "must be at least 1";
    for (args, vars, named, problem) in [
        (
            &["--deliver-batch", "0"][..],
            &[][..],
            "--deliver-batch (HERALD_DELIVER_BATCH)",
            at_least_one,
        ),
        (
            &[][..],
            &[("HERALD_DELIVER_BATCH", "0")][..],
            "--deliver-batch (HERALD_DELIVER_BATCH)",
            at_least_one,
        ),
        (
            &[][..],
            &[("HERALD_MAX_USERS", "many")][..],
            "HERALD_MAX_USERS",
            "not a whole number",
        ),
        (
            &["--telegram-rate=-3"][..],
            &[][..],
            "--telegram-rate",
            "not a whole number",
        ),
    ] {
        let (code, printed, opened) = refused_start(args, vars);
        assert_eq!(
            code,
            Some(2),
            "a usage error for {args:?} {vars:?}: {printed}"
        );
        assert!(printed.contains(named), "{args:?} {vars:?}: {printed}");
        assert!(printed.contains(problem), "{args:?} {vars:?}: {printed}");
        assert!(
            !opened,
            "{args:?} {vars:?}: refused before the database was opened"
        );
    }
}
