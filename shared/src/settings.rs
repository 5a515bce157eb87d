//! The `HERALD_*` settings, stated once. [`SHARED`] are read by both runtimes: `herald
//! serve` takes each as a flag or its variable, the Lambda functions as the variable
//! `template.yaml` sets; each has one parser and one default (per runtime where they
//! differ), here. [`SERVE_ONLY`] and [`AWS_ONLY`] name what one runtime alone reads, so
//! that a variable meant for the other runtime stops start-up instead of being ignored.
//!
//! Nothing here reads the environment: an entrypoint passes a lookup (flags, variables).

use std::time::Duration;

/// Which runtime is reading its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `herald serve`.
    Serve,
    /// The `api` and `worker` Lambda functions.
    Aws,
}

/// One setting both runtimes read.
#[derive(Debug)]
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// `herald serve`'s flag, without its dashes.
    pub flag: &'static str,
    /// The value when none is given, by runtime; None: unset.
    pub default_serve: Option<&'static str>,
    pub default_aws: Option<&'static str>,
    pub help: &'static str,
}

impl Setting {
    pub fn default_for(&self, runtime: Runtime) -> Option<&'static str> {
        match runtime {
            Runtime::Serve => self.default_serve,
            Runtime::Aws => self.default_aws,
        }
    }
}

const fn both(
    var: &'static str,
    flag: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        var,
        flag,
        default_serve: default,
        default_aws: default,
        help,
    }
}

/// Every setting both runtimes read.
pub const SHARED: &[Setting] = &[
    both(
        "HERALD_PUBLIC_URL",
        "public-url",
        None,
        "Public base URL used in printed and returned URLs (e.g. https://herald.example.com).",
    ),
    both(
        "HERALD_DELIVER_BATCH",
        "deliver-batch",
        Some("100"),
        "Users per deliver job.",
    ),
    both(
        "HERALD_EXPAND_PAGE",
        "expand-page",
        Some("1000"),
        "Users read per expand page of an `everyone` request.",
    ),
    both(
        "HERALD_MAX_USERS",
        "max-users",
        Some("10000"),
        "Most users an explicit `users` / `users_bm` list may name.",
    ),
    both(
        "HERALD_MAX_ATTEMPTS",
        "max-attempts",
        Some("5"),
        "Attempts a user gets before a delivery failing for now is final.",
    ),
    both(
        "HERALD_RETRY_BASE_MS",
        "retry-base-ms",
        Some("2000"),
        "First retry delay of a user whose delivery failed for now, in milliseconds \
         (doubled per attempt, with jitter, up to 5 minutes).",
    ),
    Setting {
        var: "HERALD_JOB_TIME_BUDGET_MS",
        flag: "job-time-budget-ms",
        default_serve: Some("20000"),
        default_aws: Some("30000"),
        help: "How long one deliver job starts deliveries before the users it has not \
               reached go on in a new job, in milliseconds: at most half a job's lease \
               (herald serve: 60 s) or of the worker function's timeout (60 s), or a job \
               could run again beside itself (30000 on AWS).",
    },
    both(
        "HERALD_TELEGRAM_API",
        "telegram-api",
        Some("https://api.telegram.org"),
        "Base URL of the Telegram Bot API.",
    ),
    both(
        "HERALD_TELEGRAM_RATE",
        "telegram-rate",
        Some("30"),
        "Telegram messages per second per bot (evenly spaced; on AWS one budget shared by \
         every worker instance).",
    ),
];

/// Variables `herald serve` alone reads (its flags say what each does).
pub const SERVE_ONLY: &[&str] = &[
    "HERALD_LISTEN",
    "HERALD_DB",
    "HERALD_NO_DEMO",
    "HERALD_LOG_FORMAT",
    "HERALD_WORKERS",
    "HERALD_SHUTDOWN_GRACE",
    "HERALD_SIMULATE_DELIVERY_MS",
    "HERALD_HEADER_TIMEOUT",
    "HERALD_BODY_TIMEOUT",
    "HERALD_KEEP_ALIVE_IDLE",
    "HERALD_MAX_CONNECTIONS",
    "HERALD_MAX_REQUESTS",
    "HERALD_MIN_FREE_DISK_MB",
    "HERALD_RETENTION_DAYS",
    "HERALD_RETENTION_SWEEP_EVERY",
    "HERALD_MAX_BACKLOG_JOBS",
    "HERALD_ADMIN_TOKEN_FILE",
];

/// Variables the Lambda functions alone read (docs/aws.md).
pub const AWS_ONLY: &[&str] = &[
    "HERALD_USERS_TABLE",
    "HERALD_EVENTS_TABLE",
    "HERALD_REQUESTS_TABLE",
    "HERALD_QUEUE_URL",
    "HERALD_TRANSACTIONAL_QUEUE_URL",
    "HERALD_DLQ_URL",
    "HERALD_USER_SHARDS",
    "HERALD_DYNAMODB_ENDPOINT",
    "HERALD_SQS_ENDPOINT",
    "HERALD_ADMIN_TOKEN_SHA256",
];

/// A setting that stops start-up, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("{var}={value:?}: {problem}")]
    Invalid {
        var: &'static str,
        value: String,
        problem: String,
    },
    #[error("{}: {}", .vars.join(", "), .elsewhere)]
    OtherRuntime {
        vars: Vec<String>,
        elsewhere: &'static str,
    },
}

/// The settings both runtimes read, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub public_url: Option<String>,
    pub deliver_batch: usize,
    pub expand_page: usize,
    pub max_users: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub job_time_budget: Duration,
    pub telegram_api: String,
    pub telegram_rate: u32,
}

impl Settings {
    /// Read every shared setting through `given` (by variable name), each one absent or
    /// empty taking its default for `runtime`.
    pub fn read(
        runtime: Runtime,
        given: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingError> {
        let value = |var: &'static str| -> Option<(&'static str, String)> {
            let setting = SHARED
                .iter()
                .find(|s| s.var == var)
                .expect("a shared setting");
            given(var)
                .filter(|v| !v.is_empty())
                .or_else(|| setting.default_for(runtime).map(String::from))
                .map(|v| (var, v))
        };
        let required = |var| value(var).expect("a setting with a default");
        Ok(Settings {
            public_url: value("HERALD_PUBLIC_URL").map(|(_, v)| v),
            deliver_batch: at_least_one(required("HERALD_DELIVER_BATCH"))?,
            expand_page: at_least_one(required("HERALD_EXPAND_PAGE"))?,
            max_users: at_least_one(required("HERALD_MAX_USERS"))?,
            max_attempts: at_least_one(required("HERALD_MAX_ATTEMPTS"))?,
            retry_base: Duration::from_millis(number(required("HERALD_RETRY_BASE_MS"))?),
            job_time_budget: Duration::from_millis(at_least_one(required(
                "HERALD_JOB_TIME_BUDGET_MS",
            ))?),
            telegram_api: url(required("HERALD_TELEGRAM_API"))?,
            telegram_rate: at_least_one(required("HERALD_TELEGRAM_RATE"))?,
        })
    }

    /// Every setting at its default for `runtime`.
    pub fn defaults(runtime: Runtime) -> Settings {
        Settings::read(runtime, |_| None).expect("the defaults parse")
    }
}

/// Refuse variables of the other runtime among `set` (the names of the variables set):
/// each would be ignored here.
pub fn refuse_other_runtimes(
    runtime: Runtime,
    set: impl IntoIterator<Item = String>,
) -> Result<(), SettingError> {
    let (others, elsewhere) = match runtime {
        Runtime::Serve => (
            AWS_ONLY,
            "set for the AWS functions, which alone read it; herald serve would ignore it, \
             so it stops here (docs/operating.md)",
        ),
        Runtime::Aws => (
            SERVE_ONLY,
            "set for herald serve, which alone reads it; the AWS functions would ignore it, \
             so they stop here (docs/aws.md)",
        ),
    };
    let mut vars: Vec<String> = set
        .into_iter()
        .filter(|name| others.contains(&name.as_str()))
        .collect();
    vars.sort();
    if vars.is_empty() {
        Ok(())
    } else {
        Err(SettingError::OtherRuntime { vars, elsewhere })
    }
}

fn number<T: std::str::FromStr>((var, value): (&'static str, String)) -> Result<T, SettingError> {
    value.trim().parse().map_err(|_| SettingError::Invalid {
        var,
        value,
        problem: "not a whole number".into(),
    })
}

fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(
    (var, value): (&'static str, String),
) -> Result<T, SettingError> {
    let n: T = number((var, value.clone()))?;
    if n < T::from(1) {
        return Err(SettingError::Invalid {
            var,
            value,
            problem: "must be at least 1".into(),
        });
    }
    Ok(n)
}

fn url((var, value): (&'static str, String)) -> Result<String, SettingError> {
    if value.starts_with("https://") || value.starts_with("http://") {
        Ok(value)
    } else {
        Err(SettingError::Invalid {
            var,
            value,
            problem: "not an http(s) URL".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(runtime: Runtime, vars: &[(&str, &str)]) -> Result<Settings, SettingError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::read(runtime, |var| vars.get(var).cloned())
    }

    #[test]
    fn defaults_differ_by_runtime_only_where_stated() {
        let serve = Settings::defaults(Runtime::Serve);
        let aws = Settings::defaults(Runtime::Aws);
        assert_eq!(serve.job_time_budget, Duration::from_secs(20));
        assert_eq!(aws.job_time_budget, Duration::from_secs(30));
        assert_eq!(
            Settings {
                job_time_budget: serve.job_time_budget,
                ..aws
            },
            serve
        );
    }

    #[test]
    fn given_values_are_parsed_applied_and_refused_by_name() {
        let s = read(
            Runtime::Aws,
            &[
                ("HERALD_DELIVER_BATCH", "7"),
                ("HERALD_MAX_USERS", " 50 "),
                ("HERALD_PUBLIC_URL", "https://h.example"),
                ("HERALD_EXPAND_PAGE", ""),
            ],
        )
        .unwrap();
        assert_eq!((s.deliver_batch, s.max_users, s.expand_page), (7, 50, 1000));
        assert_eq!(s.public_url.as_deref(), Some("https://h.example"));
        for (var, value, problem) in [
            ("HERALD_DELIVER_BATCH", "0", "must be at least 1"),
            ("HERALD_MAX_USERS", "many", "not a whole number"),
            ("HERALD_TELEGRAM_RATE", "-3", "not a whole number"),
            (
                "HERALD_TELEGRAM_API",
                "api.telegram.org",
                "not an http(s) URL",
            ),
        ] {
            let error = read(Runtime::Serve, &[(var, value)]).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{var}={value:?}: {problem}"),
                "{var}"
            );
        }
    }

    #[test]
    fn a_variable_of_the_other_runtime_is_refused_not_ignored() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(refuse_other_runtimes(Runtime::Serve, set(&["HERALD_DB", "HERALD_URL"])).is_ok());
        let error = refuse_other_runtimes(
            Runtime::Serve,
            set(&["HERALD_USERS_TABLE", "HERALD_ADMIN_TOKEN_SHA256"]),
        )
        .unwrap_err();
        assert!(error
            .to_string()
            .starts_with("HERALD_ADMIN_TOKEN_SHA256, HERALD_USERS_TABLE: set for the AWS"));
        let error = refuse_other_runtimes(Runtime::Aws, set(&["HERALD_WORKERS"])).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("HERALD_WORKERS: set for herald serve"));
        // No name is in two lists.
        for var in SERVE_ONLY.iter().chain(AWS_ONLY) {
            assert!(!SHARED.iter().any(|s| s.var == *var), "{var}");
        }
        assert!(!SERVE_ONLY.iter().any(|v| AWS_ONLY.contains(v)));
    }
}
