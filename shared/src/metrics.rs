//! Metric names and the few places that record them, through the `metrics` facade.
//!
//! The core records; each runtime installs its recorder: `herald serve` a Prometheus
//! registry answered at `GET /metrics`, the Lambdas CloudWatch Embedded Metric Format
//! lines flushed after each invocation. Labels are low-cardinality only (status codes,
//! outcome names, job kinds) — never ids.

/// Event requests answered, by HTTP status (`status`).
pub const REQUESTS: &str = "herald_requests_total";
/// Users with a final outcome, by `outcome` (delivered, not_found, failed, cancelled).
pub const USERS: &str = "herald_users_total";
/// Users re-enqueued for another attempt.
pub const RETRIES: &str = "herald_user_retries_total";
/// Users a deliver job did not reach within its time budget, handed to a new job.
pub const CONTINUED: &str = "herald_users_continued_total";
/// Jobs processed, by `kind` (deliver, expand).
pub const JOB_ATTEMPTS: &str = "herald_job_attempts_total";
/// Seconds one delivery (a message or a screen webhook) took.
pub const DELIVERY_SECONDS: &str = "herald_delivery_seconds";
/// Jobs waiting in the queue (set when scraped, where the queue can be asked).
pub const QUEUE_DEPTH: &str = "herald_queue_depth";
/// Age in seconds of the oldest job waiting.
pub const QUEUE_OLDEST_AGE: &str = "herald_queue_oldest_job_age_seconds";
/// Jobs kept dead.
pub const DEAD_LETTERS: &str = "herald_dead_letters";
/// Requests refused for an unknown event or a wrong secret, by `route` (event, status).
pub const AUTH_REFUSED: &str = "herald_auth_refused_total";
/// Connections and requests `herald serve` refused at a cap, by `cap` (connections,
/// requests, files).
pub const HTTP_REFUSED: &str = "herald_http_refused_total";

/// Describe every metric once, for recorders that publish descriptions.
pub fn describe() {
    metrics::describe_counter!(REQUESTS, "Event requests answered, by HTTP status");
    metrics::describe_counter!(
        AUTH_REFUSED,
        "Requests refused for an unknown event or a wrong secret, by route"
    );
    metrics::describe_counter!(
        HTTP_REFUSED,
        "Connections and requests refused at a cap of the server, by cap"
    );
    metrics::describe_counter!(USERS, "Users with a final outcome, by outcome");
    metrics::describe_counter!(RETRIES, "Users re-enqueued for another attempt");
    metrics::describe_counter!(
        CONTINUED,
        "Users a deliver job did not reach within its time budget, handed to a new job"
    );
    metrics::describe_counter!(JOB_ATTEMPTS, "Jobs processed, by kind");
    metrics::describe_histogram!(
        DELIVERY_SECONDS,
        metrics::Unit::Seconds,
        "Time one delivery took"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Jobs waiting in the queue");
    metrics::describe_gauge!(
        QUEUE_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest waiting job"
    );
    metrics::describe_gauge!(DEAD_LETTERS, "Jobs kept dead");
}
