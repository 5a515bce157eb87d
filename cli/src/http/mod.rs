//! The embedded runtime's HTTP server: the shared Router over hyper, with the timeouts and
//! caps a server facing the Internet needs.
//!
//! - **Timeouts** ([`deadline_io`], [`deadline_body`]): a request's headers must arrive
//!   within `header_read` of its first byte (of the connection's opening, for the first
//!   request); its body within `body_read` of its headers; a keep-alive connection may
//!   sit idle between requests for `keep_alive_idle`. A connection past one is closed
//!   (a late body is answered 408 first).
//! - **Caps** ([`overload`]): at most `max_connections` open connections (clamped below
//!   the process's file limit) and `max_requests` requests in flight. Past either, the
//!   client is answered 503 with `Retry-After` and `Connection: close` — never left
//!   hanging — and the refusal is counted (`herald_http_refused_total{cap}`) and logged at
//!   most once a second.
//! - **Shutdown**: when told to stop, it stops accepting, closes idle connections, lets
//!   requests in progress finish for at most [`DRAIN`], and drops whatever is left (slow
//!   or stalled clients), so a stop never waits on a client.

mod deadline_body;
mod deadline_io;
mod overload;

use axum::Router;
use deadline_io::{DeadlineIo, Phase};
use hyper_util::rt::TokioIo;
use overload::Refusals;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long requests in progress at shutdown get to finish before their connections are
/// dropped. A request is a few store operations; a client still sending is cut off.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Largest buffer one connection may fill with a request's head (431 past it), so that
/// many connections holding unfinished headers hold little memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The server's timeouts and caps.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub keep_alive_idle: Duration,
    pub max_connections: usize,
    pub max_requests: usize,
}

/// Serve `router` on `listener` until `stop` resolves, then shut down as described above.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let requests = Arc::new(Semaphore::new(limits.max_requests.max(1)));
    let refusals = Arc::new(Refusals::default());
    let closing = CancellationToken::new();
    let mut open: JoinSet<()> = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections as they end, so the set stays small.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or the like: say so and let connections close.
                refusals.accept_failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            refusals.refuse_connection(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            limits: limits.clone(),
            requests: requests.clone(),
            refusals: refusals.clone(),
            closing: closing.clone(),
        };
        open.spawn(async move {
            connection.run(stream).await;
            drop(slot);
        });
    }
    drop(listener);
    closing.cancel();
    let drained =
        tokio::time::timeout(DRAIN, async { while open.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::info!(
            connections = open.len(),
            "dropping connections still open after the drain"
        );
        open.abort_all();
        while open.join_next().await.is_some() {}
    }
}

/// One client connection and what it shares with the server.
struct Connection {
    router: Router,
    limits: HttpLimits,
    requests: Arc<Semaphore>,
    refusals: Arc<Refusals>,
    closing: CancellationToken,
}

impl Connection {
    async fn run(self, stream: tokio::net::TcpStream) {
        let phase = Phase::new();
        let io = DeadlineIo::new(stream, phase.clone(), self.limits.clone());
        let Connection {
            router,
            limits,
            requests,
            refusals,
            closing,
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            phase.request_started();
            let (router, phase, refusals) = (router.clone(), phase.clone(), refusals.clone());
            let permit = requests.clone().try_acquire_owned();
            let body_read = limits.body_read;
            async move {
                let response = match permit {
                    Ok(_permit) => {
                        let request = request.map(|body| {
                            axum::body::Body::new(deadline_body::within(body, body_read))
                        });
                        match router.oneshot(request).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }
                    Err(_) => refusals.refuse_request(),
                };
                phase.answered();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = closing.cancelled() => {}
        }
        // Shutting down: an idle connection closes now, one answering closes after its
        // answer; the server drops any left after the drain.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// The most connections to allow when `wanted` are asked for and the process may open
/// `file_limit` files: some are kept for the database, its log and outbound deliveries.
pub fn clamp_connections(wanted: usize, file_limit: u64) -> usize {
    let reserve = (file_limit / 2).min(256);
    let allowed = file_limit.saturating_sub(reserve).max(1);
    wanted
        .min(usize::try_from(allowed).unwrap_or(usize::MAX))
        .max(1)
}

/// Raise the process's open-file limit to its hard limit and return it (the soft limit
/// alone where it cannot be raised).
pub fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A connection that has sent `GET path`.
    async fn get(address: std::net::SocketAddr, path: &str) -> TcpStream {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: herald\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    }

    async fn read_until_closed(mut stream: TcpStream) -> String {
        let mut read = Vec::new();
        let _ = stream.read_to_end(&mut read).await;
        String::from_utf8_lossy(&read).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_shutdown_a_request_in_progress_finishes_and_a_stalled_one_is_dropped() {
        let started = Arc::new(Semaphore::new(0));
        let (quick, stuck) = (started.clone(), started.clone());
        let router = Router::new()
            .route(
                "/quick",
                axum::routing::get(move || async move {
                    quick.add_permits(1);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "finished"
                }),
            )
            .route(
                "/stuck",
                axum::routing::get(move || async move {
                    stuck.add_permits(1);
                    std::future::pending::<()>().await
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = HttpLimits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            keep_alive_idle: Duration::from_secs(75),
            max_connections: 16,
            max_requests: 16,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        let idle = TcpStream::connect(address).await.unwrap();
        let quick = get(address, "/quick").await;
        let stuck = get(address, "/stuck").await;
        let _ = started.acquire_many(2).await.unwrap();
        stop.send(()).unwrap();

        let quick = read_until_closed(quick).await;
        assert!(
            quick.starts_with("HTTP/1.1 200") && quick.ends_with("finished"),
            "{quick}"
        );
        assert_eq!(
            read_until_closed(idle).await,
            "",
            "an idle connection is closed"
        );
        // The stalled request holds the server for the drain, then its connection is
        // dropped without an answer, and the server returns.
        // (A minute only bounds a hang: the drain is DRAIN.)
        let dropped = tokio::time::timeout(Duration::from_secs(60), read_until_closed(stuck));
        assert_eq!(
            dropped.await.expect("a stalled request held the server"),
            ""
        );
        server.await.unwrap();
    }

    #[test]
    fn connections_stay_below_the_file_limit() {
        assert_eq!(clamp_connections(1024, 1_048_576), 1024);
        assert_eq!(clamp_connections(1024, 1024), 768);
        assert_eq!(clamp_connections(1024, 256), 128);
        assert_eq!(clamp_connections(1024, 1), 1);
        assert_eq!(clamp_connections(0, 1024), 1);
    }
}
