//! Local operations on the database file: create events, import and show users, show
//! requests. Each prints one JSON document on stdout for scripting.

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use herald_core::domain::{Action, UserRef};
use herald_core::ports::{RequestLog, UserStore};
use herald_core::status::RequestStatus;
use herald_sqlite::users::{ImportReport, ImportUser, IMPORT_BATCH};
use herald_sqlite::Sqlite;
use serde_json::json;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BotsCommand {
    /// Set a bot's connections (registering it if new). Omitted options stay as they are;
    /// an empty value clears one. Secrets are stored and never printed.
    Set {
        #[arg(long, env = "HERALD_DB", default_value = "herald.db")]
        db: PathBuf,
        #[arg(long)]
        bot: String,
        /// Telegram Bot API token (for `message` actions to `tg` users).
        #[arg(long, env = "HERALD_TELEGRAM_TOKEN", hide_env_values = true)]
        telegram_token: Option<String>,
        /// The bot engine's endpoint for `screen` actions.
        #[arg(long)]
        screen_url: Option<String>,
        /// Key of the HMAC-SHA256 signature on screen webhooks.
        #[arg(long, env = "HERALD_SIGNING_SECRET", hide_env_values = true)]
        signing_secret: Option<String>,
    },
}

impl BotsCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let BotsCommand::Set {
            db,
            bot,
            telegram_token,
            screen_url,
            signing_secret,
        } = self;
        if let Some(url) = screen_url.as_deref().filter(|u| !u.is_empty()) {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!("--screen-url must be an http(s) URL");
            }
        }
        let store = open(&db)?;
        store
            .set_bot(&bot, telegram_token, screen_url, signing_secret)
            .await?;
        let configured = herald_core::ports::EventDirectory::bot(&store, &bot).await?;
        print(&json!({
            "bot_id": bot,
            "telegram": configured.telegram_token.is_some(),
            "screen_url": configured.screen_url,
            "signed": configured.signing_secret.is_some(),
        }))?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Create an event; prints its id, URL and secret (shown only this once).
    Create {
        #[arg(long, env = "HERALD_DB", default_value = "herald.db")]
        db: PathBuf,
        /// Bot the event belongs to (registered if new).
        #[arg(long)]
        bot: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        action: ActionKind,
        /// Screen to show (with --action screen).
        #[arg(long, required_if_eq("action", "screen"))]
        screen: Option<String>,
        /// Message template (with --action message).
        #[arg(long, required_if_eq("action", "message"))]
        template: Option<String>,
        /// Public base URL; the printed URL is a path without it.
        #[arg(long, env = "HERALD_PUBLIC_URL")]
        public_url: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionKind {
    Screen,
    Message,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Import users from JSON lines ({"platform":"tg","platform_id":"123","bm_id":"..."});
    /// `-` reads stdin. Users already present are left alone, so a re-run adds nothing.
    Import {
        #[arg(long, env = "HERALD_DB", default_value = "herald.db")]
        db: PathBuf,
        #[arg(long)]
        bot: String,
        file: PathBuf,
    },
    /// Show one user's state, including last_request.
    Show {
        #[arg(long, env = "HERALD_DB", default_value = "herald.db")]
        db: PathBuf,
        #[arg(long)]
        bot: String,
        #[arg(long, conflicts_with_all = ["platform", "platform_id"], required_unless_present = "platform_id")]
        bm_id: Option<String>,
        #[arg(long, requires = "platform_id")]
        platform: Option<String>,
        #[arg(long, requires = "platform")]
        platform_id: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RequestsCommand {
    /// Print a request's status document (as GET /v1/requests/{id} answers it).
    Show {
        #[arg(long, env = "HERALD_DB", default_value = "herald.db")]
        db: PathBuf,
        request_id: String,
    },
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn open(db: &PathBuf) -> anyhow::Result<Sqlite> {
    Sqlite::open(db).with_context(|| format!("opening {}", db.display()))
}

impl EventsCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let EventsCommand::Create {
            db,
            bot,
            name,
            action,
            screen,
            template,
            public_url,
        } = self;
        let action = match (action, screen, template) {
            (ActionKind::Screen, Some(screen_id), _) => Action::Screen { screen_id },
            (ActionKind::Message, _, Some(template)) => Action::Message { template },
            _ => bail!("--action screen needs --screen; --action message needs --template"),
        };
        if let Err(e) = action.validate() {
            bail!("the event's action is not valid: {e}");
        }
        let created = open(&db)?.create_event(&bot, &name, action).await?;
        let path = format!("/v1/events/{}/{}", created.event_id, created.secret);
        let url = match public_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path,
        };
        print(&json!({
            "event_id": created.event_id,
            "bot_id": created.bot_id,
            "name": created.name,
            "action": created.action,
            "secret": created.secret,
            "url": url,
        }))?;
        Ok(ExitCode::SUCCESS)
    }
}

impl UsersCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            UsersCommand::Import { db, bot, file } => import(&open(&db)?, &bot, &file).await,
            UsersCommand::Show {
                db,
                bot,
                bm_id,
                platform,
                platform_id,
            } => {
                let store = open(&db)?;
                let bm_id = match (bm_id, platform, platform_id) {
                    (Some(bm_id), _, _) => Some(bm_id),
                    (None, Some(platform), Some(id)) => store
                        .resolve(&bot, &[UserRef::Platform { platform, id }])
                        .await?
                        .pop()
                        .flatten()
                        .map(|u| u.bm_id),
                    _ => bail!("give --bm-id, or --platform with --platform-id"),
                };
                let user = match bm_id {
                    Some(bm_id) => store.user_json(&bot, &bm_id).await?,
                    None => None,
                };
                match user {
                    Some(user) => {
                        print(&user)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    None => {
                        eprintln!("herald: no such user in bot {bot}");
                        Ok(ExitCode::from(2))
                    }
                }
            }
        }
    }
}

/// Stream JSON lines into batched transactions; bad lines are reported and skipped.
async fn import(store: &Sqlite, bot: &str, file: &PathBuf) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let opened =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, opened))
    };
    let mut total = ImportReport::default();
    let mut invalid = 0u64;
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ImportUser>(&line) {
            Ok(user) if valid_import(&user) => batch.push(user),
            Ok(_) => {
                invalid += 1;
                eprintln!(
                    "herald: line {}: platform and platform_id must be non-empty",
                    number + 1
                );
            }
            Err(e) => {
                invalid += 1;
                eprintln!("herald: line {}: {e}", number + 1);
            }
        }
        if batch.len() == IMPORT_BATCH {
            add(
                &mut total,
                store.import_users(bot, std::mem::take(&mut batch)).await?,
            );
        }
    }
    if !batch.is_empty() {
        add(&mut total, store.import_users(bot, batch).await?);
    }
    print(&json!({"inserted": total.inserted, "existing": total.existing, "invalid": invalid}))?;
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn valid_import(user: &ImportUser) -> bool {
    !user.platform.is_empty() && !user.platform_id.is_empty() && user.bm_id.as_deref() != Some("")
}

fn add(total: &mut ImportReport, report: ImportReport) {
    total.inserted += report.inserted;
    total.existing += report.existing;
}

impl RequestsCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let RequestsCommand::Show { db, request_id } = self;
        match open(&db)?.progress(&request_id).await? {
            Some(progress) => {
                print(&RequestStatus::from(progress))?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("herald: no request {request_id}");
                Ok(ExitCode::from(2))
            }
        }
    }
}
