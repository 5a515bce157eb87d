//! The event request contract: parse and validate the body a CRM sends.
//!
//! [`parse`] turns raw bytes into an [`EventRequest`] or a [`RequestError`] naming every
//! offending field by path (`users[3]`, `users[0].data`, `data`). It enforces the rules and
//! limits of the contract (docs/event-request.md): exactly one of `users` / `users_bm`, `platform`
//! required with `users`, `any` only with `everyone`, ids as strings or integers (normalised
//! to strings, de-duplicated, order kept), per-user `data` merged over the request's
//! (RFC 7396), a `send_at` at most 30 days ahead ([`crate::schedule`]), and the size,
//! count, length and depth limits of [`Limits`].

use crate::config::Limits;
use crate::domain::{JobUser, Object, PlatformFilter, UserRef};
use crate::ids::{Platform, PlatformId};
use crate::lane::Lane;
use crate::merge::Measured;
use serde_json::Value;
use std::collections::HashMap;

/// A valid event request.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRequest {
    pub targets: Targets,
    /// The request's `data` (`{}` when absent).
    pub data: Object,
    pub dry_run: bool,
    /// The lane the request names, if it names one (checked against its audience).
    pub lane: Option<Lane>,
    /// Entries of an explicit audience as the request names them, before de-duplication
    /// (as the limit on users counts them); None for `everyone`.
    pub named: Option<usize>,
    /// When to send it (milliseconds since the Unix epoch), if scheduled: see
    /// [`crate::schedule`].
    pub send_at: Option<i64>,
}

impl EventRequest {
    /// The lane the request runs in: the one it names; else its event's default lane
    /// (`event_default`) where that lane can carry this audience; else the default for
    /// its audience.
    pub fn lane(&self, event_default: Option<Lane>) -> Lane {
        let fits = |lane: &Lane| lane.refusal(self.named).is_none();
        self.lane
            .or(event_default.filter(fits))
            .unwrap_or_else(|| Lane::by_default(self.named))
    }
}

/// Who the request targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Explicit platform ids, de-duplicated, in request order.
    Platform {
        platform: String,
        users: Vec<JobUser>,
    },
    /// Explicit state ids (`users_bm`), de-duplicated, in request order.
    Bm { users: Vec<JobUser> },
    /// `"users": "everyone"`.
    Everyone { platform: PlatformFilter },
}

impl Targets {
    /// Number of explicit users, None for `everyone`.
    pub fn explicit_count(&self) -> Option<usize> {
        match self {
            Targets::Platform { users, .. } | Targets::Bm { users } => Some(users.len()),
            Targets::Everyone { .. } => None,
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `users[3]` or `data`; empty for the whole body.
    pub field: String,
    pub message: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not JSON (400), with the position serde_json reports.
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    /// Over a size limit (413).
    TooLarge(Vec<FieldError>),
    /// JSON, but not a valid request (422).
    Invalid(Vec<FieldError>),
}

/// Parse and validate an event request body.
pub fn parse(body: &[u8], limits: &Limits) -> Result<EventRequest, RequestError> {
    parse_at(body, limits, crate::domain::now_ms())
}

/// [`parse`] at `now` (milliseconds since the Unix epoch), which bounds `send_at`.
pub fn parse_at(body: &[u8], limits: &Limits, now: i64) -> Result<EventRequest, RequestError> {
    if body.len() > limits.max_body_bytes {
        return Err(RequestError::TooLarge(vec![field_error(
            "",
            format!(
                "body is {} bytes; the limit is {}",
                body.len(),
                limits.max_body_bytes
            ),
        )]));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            RequestError::Invalid(vec![field_error(
                "",
                format!(
                    "JSON is nested too deeply (data may nest at most {} levels)",
                    limits.max_data_depth
                ),
            )])
        } else {
            RequestError::Malformed {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            }
        }
    })?;
    let Value::Object(body) = value else {
        return Err(RequestError::Invalid(vec![field_error(
            "",
            format!("the body must be a JSON object, not {}", kind_of(&value)),
        )]));
    };
    Validator::new(limits, now).validate(body)
}

struct Validator<'a> {
    limits: &'a Limits,
    now: i64,
    invalid: Vec<FieldError>,
    too_large: Vec<FieldError>,
    /// Entries of the explicit audience, once read.
    named: Option<usize>,
}

impl<'a> Validator<'a> {
    fn new(limits: &'a Limits, now: i64) -> Self {
        Validator {
            limits,
            now,
            invalid: Vec::new(),
            too_large: Vec::new(),
            named: None,
        }
    }

    fn validate(mut self, body: Object) -> Result<EventRequest, RequestError> {
        let data = self.data(body.get("data"));
        let dry_run = self.dry_run(body.get("dry_run"));
        let lane = self.lane(body.get("lane"));
        let send_at = self.send_at(body.get("send_at"));
        let targets = self.targets(&body, &data);
        if !self.too_large.is_empty() {
            return Err(RequestError::TooLarge(self.too_large));
        }
        if let (Some(lane), Some(_)) = (lane, &targets) {
            if let Some(refusal) = lane.refusal(self.named) {
                self.invalid("lane", refusal);
            }
        }
        match targets {
            Some(targets) if self.invalid.is_empty() => Ok(EventRequest {
                targets,
                data,
                dry_run,
                lane,
                named: self.named,
                send_at,
            }),
            _ => Err(RequestError::Invalid(self.invalid)),
        }
    }

    fn dry_run(&mut self, raw: Option<&Value>) -> bool {
        match raw {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.invalid(
                    "dry_run",
                    format!("must be true or false, not {}", kind_of(other)),
                );
                false
            }
        }
    }

    fn lane(&mut self, raw: Option<&Value>) -> Option<Lane> {
        let raw = raw.filter(|v| !v.is_null())?;
        let lane = raw.as_str().and_then(Lane::parse);
        if lane.is_none() {
            self.invalid("lane", "must be \"transactional\" or \"bulk\"");
        }
        lane
    }

    fn send_at(&mut self, raw: Option<&Value>) -> Option<i64> {
        let raw = raw.filter(|v| !v.is_null())?;
        let Value::String(text) = raw else {
            self.invalid(
                "send_at",
                format!("must be an RFC 3339 time as a string, not {}", kind_of(raw)),
            );
            return None;
        };
        crate::schedule::parse(text, self.now)
            .map_err(|why| self.invalid("send_at", why))
            .ok()
    }

    /// Who the request targets, from `platform`, `users` and `users_bm`.
    fn targets(&mut self, body: &Object, data: &Object) -> Option<Targets> {
        let platform = self.platform(body.get("platform"));
        let users = body.get("users").filter(|v| !v.is_null());
        let users_bm = body.get("users_bm").filter(|v| !v.is_null());
        match (users, users_bm) {
            (Some(_), Some(_)) => {
                self.invalid("users_bm", "send either users or users_bm, not both");
                None
            }
            (None, None) => {
                self.invalid("users", "one of users or users_bm is required");
                None
            }
            (Some(Value::String(s)), None) if s == "everyone" => match platform {
                Some(p) => Some(Targets::Everyone {
                    platform: PlatformFilter::parse(&p),
                }),
                None => {
                    self.require_platform(body.get("platform"));
                    None
                }
            },
            (Some(users), None) => self.platform_users(body, platform, users, data),
            (None, Some(Value::String(s))) if s == "everyone" => {
                self.invalid(
                    "users_bm",
                    "\"everyone\" goes in users, with a platform (or \"any\")",
                );
                None
            }
            (None, Some(users_bm)) => self
                .user_list("users_bm", users_bm, data, |id| UserRef::Bm { id })
                .map(|users| Targets::Bm { users }),
        }
    }

    /// Explicit platform ids in `users`, on `platform`.
    fn platform_users(
        &mut self,
        body: &Object,
        platform: Option<String>,
        users: &Value,
        data: &Object,
    ) -> Option<Targets> {
        let on = platform.clone().unwrap_or_default();
        let users = self.user_list("users", users, data, |id| UserRef::Platform {
            platform: on.clone(),
            id,
        });
        match (platform.as_deref(), users) {
            (Some("any"), _) => {
                self.invalid(
                    "platform",
                    "\"any\" is only allowed with \"users\": \"everyone\"; \
                     explicit ids need their platform",
                );
                None
            }
            (Some(p), Some(users)) => Some(Targets::Platform {
                platform: p.to_string(),
                users,
            }),
            (None, _) => {
                self.require_platform(body.get("platform"));
                None
            }
            (Some(_), None) => None,
        }
    }

    fn invalid(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.invalid.push(field_error(field, message));
    }

    fn require_platform(&mut self, raw: Option<&Value>) {
        if raw.is_none_or(Value::is_null) {
            self.invalid("platform", "platform is required with users");
        }
    }

    fn platform(&mut self, raw: Option<&Value>) -> Option<String> {
        match raw? {
            Value::Null => None,
            Value::String(p) if p == "any" || Platform::parse(p.as_str()).is_ok() => {
                Some(p.clone())
            }
            Value::String(_) => {
                self.invalid(
                    "platform",
                    "must be a platform name such as \"tg\" (1-32 of a-z, 0-9, _ or -) or \"any\"",
                );
                None
            }
            other => {
                self.invalid(
                    "platform",
                    format!("must be a string, not {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn data(&mut self, raw: Option<&Value>) -> Object {
        match raw {
            None | Some(Value::Null) => Object::new(),
            Some(Value::Object(data)) => {
                self.check_object("data", data);
                data.clone()
            }
            Some(other) => {
                self.invalid("data", format!("must be an object, not {}", kind_of(other)));
                Object::new()
            }
        }
    }

    /// Depth and size limits of a `data` object; true when within them.
    fn check_object(&mut self, field: &str, data: &Object) -> bool {
        let depth = object_depth(data);
        if depth > self.limits.max_data_depth {
            self.invalid(
                field,
                format!(
                    "nests {depth} levels deep; the limit is {}",
                    self.limits.max_data_depth
                ),
            );
            return false;
        }
        let size = serialized_len(data);
        if size > self.limits.max_data_bytes {
            self.too_large.push(field_error(
                field,
                format!(
                    "is {size} bytes serialized; the limit is {}",
                    self.limits.max_data_bytes
                ),
            ));
            return false;
        }
        true
    }

    /// An explicit list: an array of ids or `{id, data}` entries, or a single id.
    fn user_list(
        &mut self,
        field: &str,
        raw: &Value,
        data: &Object,
        user_ref: impl Fn(String) -> UserRef,
    ) -> Option<Vec<JobUser>> {
        let single;
        let (entries, indexed): (&[Value], bool) = match raw {
            Value::Array(items) => (items.as_slice(), true),
            other => {
                single = [other.clone()];
                (&single, false)
            }
        };
        if entries.is_empty() {
            self.invalid(field, "must name at least one user");
            return None;
        }
        self.named = Some(entries.len());
        if entries.len() > self.limits.max_users {
            self.invalid(
                field,
                format!(
                    "names {} users; the limit is {} per request (use \"everyone\" or several requests)",
                    entries.len(),
                    self.limits.max_users
                ),
            );
            return None;
        }
        let errors_before = self.invalid.len() + self.too_large.len();
        // Measured once: each entry's merged size is then found in time linear in its own
        // patch, so validating costs time linear in the body.
        let measured = Measured::new(data);
        let mut users: Vec<JobUser> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let path = if indexed {
                format!("{field}[{i}]")
            } else {
                field.to_string()
            };
            let Some((id, patch)) = self.entry(&path, entry, &measured) else {
                continue;
            };
            match seen.get(&id) {
                Some(&first) if users[first].patch != patch => {
                    self.invalid(path, format!("repeats id {id:?} with different data"));
                }
                Some(_) => {}
                None => {
                    seen.insert(id.clone(), users.len());
                    users.push(JobUser {
                        user: user_ref(id),
                        patch,
                    });
                }
            }
        }
        (self.invalid.len() + self.too_large.len() == errors_before).then_some(users)
    }

    /// One entry: an id, or `{"id": ..., "data": {...}}`.
    fn entry(
        &mut self,
        path: &str,
        entry: &Value,
        data: &Measured,
    ) -> Option<(String, Option<Object>)> {
        match entry {
            Value::Object(fields) => {
                let id_path = format!("{path}.id");
                let id = match fields.get("id") {
                    None | Some(Value::Null) => {
                        self.invalid(id_path, "id is required in a user entry");
                        None
                    }
                    Some(raw) => self.id(&id_path, raw),
                };
                let data_path = format!("{path}.data");
                let patch = match fields.get("data") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(patch)) => {
                        if !self.check_object(&data_path, patch) {
                            return None;
                        }
                        // A merged object is at most both sizes together: measure it only
                        // when that bound is over the limit.
                        if data.len() + serialized_len(patch) > self.limits.max_data_bytes {
                            let merged = data.merged_len(patch);
                            if merged > self.limits.max_data_bytes {
                                self.too_large.push(field_error(
                                    data_path,
                                    format!(
                                        "merged over data is {merged} bytes; the limit is {}",
                                        self.limits.max_data_bytes
                                    ),
                                ));
                                return None;
                            }
                        }
                        Some(patch.clone())
                    }
                    Some(other) => {
                        self.invalid(
                            data_path,
                            format!("must be an object, not {}", kind_of(other)),
                        );
                        return None;
                    }
                };
                Some((id?, patch))
            }
            other => Some((self.id(path, other)?, None)),
        }
    }

    /// A user id: a string or an integer, by the rule of [`PlatformId`].
    fn id(&mut self, path: &str, raw: &Value) -> Option<String> {
        let id = match raw {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            Value::Number(_) => {
                self.invalid(path, "must be a string or an integer, not a fraction");
                return None;
            }
            other => {
                self.invalid(
                    path,
                    format!("must be a string or an integer, not {}", kind_of(other)),
                );
                return None;
            }
        };
        // One rule for a user id, whichever kind (ids::PlatformId, ids::BmId).
        match PlatformId::parse(id) {
            Ok(id) => Some(id.into_string()),
            Err(problem) => {
                self.invalid(path, problem.to_string());
                None
            }
        }
    }
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Nesting depth of an object: `{}` is 1, `{"a": {}}` is 2, `{"a": [{}]}` is 3.
pub fn object_depth(object: &Object) -> usize {
    // Iterative, so that no input can overflow the stack.
    let mut deepest = 1;
    let mut stack: Vec<(&Value, usize)> = object.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Object(o) => {
                deepest = deepest.max(depth);
                stack.extend(o.values().map(|v| (v, depth + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(depth);
                stack.extend(a.iter().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Length of the compact JSON serialization, without building it.
pub fn serialized_len(object: &Object) -> usize {
    crate::merge::serialized_len_of(object)
}
