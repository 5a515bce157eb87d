//! The operator's subcommands: bots, events, users, requests and dead letters, each a thin
//! call of the admin API through a [`Client`] (HTTP with `--url`, in process with `--db`).
//!
//! Output is the API's JSON (or `--human` tables); exit codes are 0 on success, 1 on a
//! refusal and 2 when the thing asked for does not exist (or, for imports, when some lines
//! were rejected).

use crate::client::{segment, Client, Target};
use crate::output::{self, report};
use anyhow::{bail, Context};
use axum::http::Method;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};
use std::process::ExitCode;

#[derive(Args)]
pub struct BotsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: BotsCommand,
}

/// A bot's connections; omitted options stay as they are, an empty value clears one.
#[derive(Args, Debug)]
pub struct Connections {
    /// Telegram Bot API token (for `message` actions to `tg` users).
    #[arg(long, env = "HERALD_TELEGRAM_TOKEN", hide_env_values = true)]
    telegram_token: Option<String>,
    /// The bot engine's endpoint for `screen` actions.
    #[arg(long)]
    screen_url: Option<String>,
    /// Key of the HMAC-SHA256 signature on screen webhooks.
    #[arg(long, env = "HERALD_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<String>,
    /// Any channel's field, as CHANNEL.FIELD=VALUE (repeatable; an empty VALUE clears it).
    #[arg(long = "connection", value_name = "CHANNEL.FIELD=VALUE", long_help = connection_help())]
    connections: Vec<String>,
}

/// The `--connection` help: every registered channel and its fields.
fn connection_help() -> String {
    let mut help = String::from(
        "Any channel's field, as CHANNEL.FIELD=VALUE (repeatable; an empty VALUE clears it). \
         The options above are the same fields under their first names. Channels:",
    );
    for channel in herald_delivery::CHANNELS {
        for field in channel.fields {
            help.push_str(&format!(
                "\n  {}.{}  {}",
                channel.name, field.name, field.about
            ));
        }
    }
    help
}

impl Connections {
    fn document(self) -> anyhow::Result<Map<String, Value>> {
        let mut map = Map::new();
        for (key, value) in [
            ("telegram_token", self.telegram_token),
            ("screen_url", self.screen_url),
            ("signing_secret", self.signing_secret),
        ] {
            if let Some(value) = value {
                map.insert(key.into(), Value::String(value));
            }
        }
        let mut channels = Map::new();
        for given in self.connections {
            let parsed = given
                .split_once('=')
                .and_then(|(name, value)| Some((name.split_once('.')?, value)));
            let Some(((channel, field), value)) = parsed else {
                anyhow::bail!("--connection takes CHANNEL.FIELD=VALUE, not {given:?}");
            };
            let fields = channels
                .entry(channel.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(fields) = fields {
                fields.insert(field.into(), Value::String(value.into()));
            }
        }
        if !channels.is_empty() {
            map.insert("connections".into(), Value::Object(channels));
        }
        Ok(map)
    }
}

#[derive(Subcommand)]
pub enum BotsCommand {
    /// List bots (which connections are set; secrets are never shown).
    List,
    /// Show one bot.
    Show { bot: String },
    /// Register a bot with its connections.
    Create {
        bot: String,
        #[command(flatten)]
        connections: Connections,
    },
    /// Change a bot's connections.
    Update {
        bot: String,
        #[command(flatten)]
        connections: Connections,
    },
    /// Create the bot if new, else change its connections.
    Set {
        #[arg(long)]
        bot: String,
        #[command(flatten)]
        connections: Connections,
    },
    /// Delete a bot no event uses (its users stay).
    Delete { bot: String },
}

impl BotsArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.target)?;
        let human = self.target.human;
        let answer = match self.command {
            BotsCommand::List => client.send(Method::GET, "/v1/admin/bots", None).await?,
            BotsCommand::Show { bot } => {
                let path = format!("/v1/admin/bots/{}", segment(&bot));
                client.send(Method::GET, &path, None).await?
            }
            BotsCommand::Create { bot, connections } => {
                let mut document = connections.document()?;
                document.insert("id".into(), Value::String(bot));
                client
                    .send_json(Method::POST, "/v1/admin/bots", &Value::Object(document))
                    .await?
            }
            BotsCommand::Update { bot, connections } => {
                let path = format!("/v1/admin/bots/{}", segment(&bot));
                let document = Value::Object(connections.document()?);
                client.send_json(Method::PATCH, &path, &document).await?
            }
            BotsCommand::Set { bot, connections } => {
                let path = format!("/v1/admin/bots/{}", segment(&bot));
                let changes = connections.document()?;
                let updated = client
                    .send_json(Method::PATCH, &path, &Value::Object(changes.clone()))
                    .await?;
                if updated.status.as_u16() == 404 {
                    let mut document = changes;
                    document.insert("id".into(), Value::String(bot));
                    client
                        .send_json(Method::POST, "/v1/admin/bots", &Value::Object(document))
                        .await?
                } else {
                    updated
                }
            }
            BotsCommand::Delete { bot } => {
                let path = format!("/v1/admin/bots/{}", segment(&bot));
                client.send(Method::DELETE, &path, None).await?
            }
        };
        Ok(report(&answer, human))
    }
}

#[derive(Args)]
pub struct EventsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ActionKind {
    Screen,
    Message,
}

/// A message action's parts (docs/delivery.md, "Messages"); per-platform texts and
/// Telegram's other link preview options are set through the admin API.
#[derive(Args, Debug)]
pub struct MessageFlags {
    /// Message template (with --action message).
    #[arg(long, required_if_eq("action", "message"))]
    template: Option<String>,
    /// The template's markup: values put into it are escaped for it; channels that do not
    /// render it get plain text.
    #[arg(long, value_enum)]
    markup: Option<MarkupKind>,
    /// A URL button, as TEXT=URL (both templates; the URL begins with http:// or https://).
    /// Repeat for more buttons.
    #[arg(long = "button", value_name = "TEXT=URL")]
    buttons: Vec<String>,
    /// No link preview under the message on Telegram.
    #[arg(long)]
    no_link_preview: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MarkupKind {
    Html,
    MarkdownV2,
}

impl MessageFlags {
    /// The admin API's message action.
    fn document(self, template: String) -> anyhow::Result<Value> {
        let mut action = json!({"type": "message", "template": template});
        if let Some(markup) = self.markup {
            action["markup"] = json!(match markup {
                MarkupKind::Html => "html",
                MarkupKind::MarkdownV2 => "markdown_v2",
            });
        }
        let mut buttons = Vec::new();
        for button in &self.buttons {
            let Some((text, url)) = button.split_once('=') else {
                bail!("--button takes TEXT=URL, not {button:?}");
            };
            buttons.push(json!({"text": text, "url": url}));
        }
        if !buttons.is_empty() {
            action["buttons"] = buttons.into();
        }
        if self.no_link_preview {
            action["telegram"] = json!({"link_preview": {"is_disabled": true}});
        }
        Ok(action)
    }
}

/// A delivery lane, as an event's default.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LaneKind {
    Transactional,
    Bulk,
}

impl LaneKind {
    fn name(self) -> &'static str {
        match self {
            LaneKind::Transactional => "transactional",
            LaneKind::Bulk => "bulk",
        }
    }
}

/// A per-event rate limit.
#[derive(Args, Debug)]
pub struct Limit {
    /// Requests per second the event accepts (with --burst).
    #[arg(long, requires = "burst")]
    rate_per_second: Option<f64>,
    /// Requests accepted at once after a quiet spell.
    #[arg(long, requires = "rate_per_second")]
    burst: Option<u32>,
}

impl Limit {
    fn document(&self) -> Option<Value> {
        match (self.rate_per_second, self.burst) {
            (Some(per_second), Some(burst)) => {
                Some(json!({"per_second": per_second, "burst": burst}))
            }
            _ => None,
        }
    }
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// List events (of one bot with --bot).
    List {
        #[arg(long)]
        bot: Option<String>,
    },
    /// Show one event (never its secret).
    Show { event: String },
    /// Create an event; prints its secret and URL — the only time they are shown.
    Create {
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
        #[command(flatten)]
        message: MessageFlags,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        limit: Limit,
        /// The lane of its requests that name none, where it fits their audience
        /// (default: by audience).
        #[arg(long, value_enum)]
        lane: Option<LaneKind>,
    },
    /// Change an event's name, rate limit or default lane.
    Update {
        event: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limit: Limit,
        /// Remove the rate limit.
        #[arg(long, conflicts_with_all = ["rate_per_second", "burst"])]
        no_rate_limit: bool,
        /// The lane of its requests that name none, where it fits their audience.
        #[arg(long, value_enum)]
        lane: Option<LaneKind>,
        /// Remove the default lane (requests go by audience again).
        #[arg(long, conflicts_with = "lane")]
        no_lane: bool,
    },
    /// Switch an event on.
    Enable { event: String },
    /// Switch an event off (its URL answers 403 until enabled again).
    Disable { event: String },
    /// Replace an event's secret; prints the new one (shown only now).
    RotateSecret {
        event: String,
        /// Seconds the old secret keeps working (0: it stops at once).
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
    /// Delete an event (its requests stay readable).
    Delete { event: String },
}

impl EventsArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.target)?;
        let human = self.target.human;
        let event_path = |id: &str| format!("/v1/admin/events/{}", segment(id));
        let answer = match self.command {
            EventsCommand::List { bot } => {
                let path = match bot {
                    Some(bot) => format!("/v1/admin/events?bot_id={}", segment(&bot)),
                    None => "/v1/admin/events".into(),
                };
                client.send(Method::GET, &path, None).await?
            }
            EventsCommand::Show { event } => {
                client.send(Method::GET, &event_path(&event), None).await?
            }
            EventsCommand::Create {
                bot,
                name,
                action,
                screen,
                message,
                disabled,
                limit,
                lane,
            } => {
                let mut document =
                    create_document(bot, name, action, screen, message, disabled, &limit)?;
                set_lane(&mut document, lane, false);
                client
                    .send_json(Method::POST, "/v1/admin/events", &document)
                    .await?
            }
            EventsCommand::Update {
                event,
                name,
                limit,
                no_rate_limit,
                lane,
                no_lane,
            } => {
                let mut document = update_document(name, &limit, no_rate_limit);
                set_lane(&mut document, lane, no_lane);
                client
                    .send_json(Method::PATCH, &event_path(&event), &document)
                    .await?
            }
            EventsCommand::Enable { event } => {
                client
                    .send_json(
                        Method::PATCH,
                        &event_path(&event),
                        &json!({"enabled": true}),
                    )
                    .await?
            }
            EventsCommand::Disable { event } => {
                client
                    .send_json(
                        Method::PATCH,
                        &event_path(&event),
                        &json!({"enabled": false}),
                    )
                    .await?
            }
            EventsCommand::RotateSecret { event, grace } => {
                let path = format!("{}/rotate-secret", event_path(&event));
                client
                    .send_json(Method::POST, &path, &json!({"grace_seconds": grace}))
                    .await?
            }
            EventsCommand::Delete { event } => {
                client
                    .send(Method::DELETE, &event_path(&event), None)
                    .await?
            }
        };
        Ok(report(&answer, human))
    }
}

/// The admin API document of `events create`.
fn create_document(
    bot: String,
    name: String,
    action: ActionKind,
    screen: Option<String>,
    mut message: MessageFlags,
    disabled: bool,
    limit: &Limit,
) -> anyhow::Result<Value> {
    let action = match (action, screen, message.template.take()) {
        (ActionKind::Screen, Some(screen_id), _) => {
            json!({"type": "screen", "screen_id": screen_id})
        }
        (ActionKind::Message, _, Some(template)) => message.document(template)?,
        _ => bail!("--action screen needs --screen; --action message needs --template"),
    };
    let mut document = json!({
        "bot_id": bot, "name": name, "action": action, "enabled": !disabled,
    });
    if let Some(limit) = limit.document() {
        document["rate_limit"] = limit;
    }
    Ok(document)
}

/// `lane` in an event document: the one given, else `null` to remove it.
fn set_lane(document: &mut Value, lane: Option<LaneKind>, remove: bool) {
    if let Some(lane) = lane {
        document["lane"] = json!(lane.name());
    } else if remove {
        document["lane"] = Value::Null;
    }
}

/// The admin API document of `events update`.
fn update_document(name: Option<String>, limit: &Limit, no_rate_limit: bool) -> Value {
    let mut document = json!({});
    if let Some(name) = name {
        document["name"] = Value::String(name);
    }
    if let Some(limit) = limit.document() {
        document["rate_limit"] = limit;
    } else if no_rate_limit {
        document["rate_limit"] = Value::Null;
    }
    document
}

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: UsersCommand,
}

/// Which user: `--bm-id`, or `--platform` with `--platform-id`.
#[derive(Args, Debug)]
pub struct Who {
    #[arg(long)]
    bot: String,
    #[arg(long, conflicts_with_all = ["platform", "platform_id"], required_unless_present = "platform_id")]
    bm_id: Option<String>,
    #[arg(long, requires = "platform_id")]
    platform: Option<String>,
    #[arg(long, requires = "platform")]
    platform_id: Option<String>,
}

impl Who {
    fn path(&self) -> anyhow::Result<String> {
        let (platform, id) = match (&self.bm_id, &self.platform, &self.platform_id) {
            (Some(bm_id), _, _) => ("bm", bm_id),
            (None, Some(platform), Some(id)) => (platform.as_str(), id),
            _ => bail!("give --bm-id, or --platform with --platform-id"),
        };
        Ok(format!(
            "/v1/admin/bots/{}/users/{}/{}",
            segment(&self.bot),
            segment(platform),
            segment(id)
        ))
    }
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Import users from JSON lines ({"platform":"tg","platform_id":"123","bm_id":"..."})
    /// or CSV with a header line (platform,platform_id[,bm_id]); `-` reads stdin. Users
    /// already present are left alone, so a re-run adds nothing and an interrupted import
    /// is resumed by running it again.
    Import {
        #[arg(long)]
        bot: String,
        /// Input format (default: from the file name; JSON lines otherwise).
        #[arg(long, value_enum)]
        format: Option<crate::import::Format>,
        file: std::path::PathBuf,
    },
    /// Show one user's state, including last_request.
    Show {
        #[command(flatten)]
        who: Who,
    },
    /// Delete one user.
    Delete {
        #[command(flatten)]
        who: Who,
    },
}

impl UsersArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.target)?;
        let human = self.target.human;
        let answer = match self.command {
            UsersCommand::Import { bot, format, file } => {
                return crate::import::run(&client, &bot, format, &file, human).await
            }
            UsersCommand::Show { who } => client.send(Method::GET, &who.path()?, None).await?,
            UsersCommand::Delete { who } => client.send(Method::DELETE, &who.path()?, None).await?,
        };
        Ok(report(&answer, human))
    }
}

#[derive(Args)]
pub struct RequestsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: RequestsCommand,
}

#[derive(Subcommand)]
pub enum RequestsCommand {
    /// Recent requests of an event, newest first.
    List {
        #[arg(long)]
        event: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only requests older than this request id (the previous page's `next_before`).
        #[arg(long)]
        before: Option<String>,
    },
    /// Print a request's status document.
    Show { request_id: String },
    /// Cancel a pending request: its remaining users are counted `cancelled`.
    Cancel { request_id: String },
    /// Print a request's counters as they change, until it is done.
    Watch {
        request_id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

impl RequestsArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.target)?;
        let human = self.target.human;
        let request_path = |id: &str| format!("/v1/admin/requests/{}", segment(id));
        let answer = match self.command {
            RequestsCommand::List {
                event,
                limit,
                before,
            } => {
                let mut path = format!(
                    "/v1/admin/requests?event_id={}&limit={limit}",
                    segment(&event)
                );
                if let Some(before) = before {
                    path.push_str(&format!("&before={}", segment(&before)));
                }
                client.send(Method::GET, &path, None).await?
            }
            RequestsCommand::Show { request_id } => {
                client
                    .send(Method::GET, &request_path(&request_id), None)
                    .await?
            }
            RequestsCommand::Cancel { request_id } => {
                let path = format!("{}/cancel", request_path(&request_id));
                client.send(Method::POST, &path, None).await?
            }
            RequestsCommand::Watch {
                request_id,
                interval,
            } => return watch(&client, &request_path(&request_id), interval, human).await,
        };
        Ok(report(&answer, human))
    }
}

/// Poll a request's status, printing a line each time its counters move, until it ends.
async fn watch(
    client: &Client,
    path: &str,
    interval: f64,
    human: bool,
) -> anyhow::Result<ExitCode> {
    let pause = std::time::Duration::from_secs_f64(interval.clamp(0.05, 3600.0));
    let mut last = String::new();
    loop {
        let answer = client.send(Method::GET, path, None).await?;
        if !answer.status.is_success() {
            return Ok(report(&answer, human));
        }
        let status = answer.json();
        let line = format!(
            "{} targeted={} delivered={} not_found={} failed={} cancelled={} pending={}",
            status["state"].as_str().unwrap_or("?"),
            status["targeted"],
            status["delivered"],
            status["not_found"],
            status["failed"],
            status["cancelled"],
            status["pending"],
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if matches!(
            status["state"].as_str(),
            Some("done" | "aborted" | "cancelled")
        ) {
            output::print(&status, human);
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(pause).await;
    }
}

#[derive(Args)]
pub struct DlqArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: DlqCommand,
}

/// Which dead letters: job ids, or --all.
#[derive(Args, Debug)]
pub struct Which {
    /// Job ids (as `herald dlq list` shows them).
    ids: Vec<String>,
    /// Every dead letter.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

impl Which {
    fn document(self) -> anyhow::Result<Value> {
        match (self.all, self.ids.is_empty()) {
            (true, _) => Ok(json!({"all": true})),
            (false, false) => Ok(json!({"ids": self.ids})),
            (false, true) => bail!("name the jobs, or say --all"),
        }
    }
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Dead letters with their reasons, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead jobs back on the queue (their users' failures are reopened).
    Redrive {
        #[command(flatten)]
        which: Which,
    },
    /// Delete dead jobs for good.
    Purge {
        #[command(flatten)]
        which: Which,
    },
}

impl DlqArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.target)?;
        let human = self.target.human;
        let answer = match self.command {
            DlqCommand::List { limit } => {
                let path = format!("/v1/admin/dead-letters?limit={limit}");
                client.send(Method::GET, &path, None).await?
            }
            DlqCommand::Redrive { which } => {
                client
                    .send_json(
                        Method::POST,
                        "/v1/admin/dead-letters/redrive",
                        &which.document()?,
                    )
                    .await?
            }
            DlqCommand::Purge { which } => {
                client
                    .send_json(
                        Method::POST,
                        "/v1/admin/dead-letters/purge",
                        &which.document()?,
                    )
                    .await?
            }
        };
        Ok(report(&answer, human))
    }
}

/// Read a whole file or stdin (`-`) as text.
pub fn read_input(file: &std::path::Path) -> anyhow::Result<Box<dyn std::io::BufRead>> {
    if file.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, opened)))
}
