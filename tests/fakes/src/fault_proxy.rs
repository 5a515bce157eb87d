//! A TCP relay that fails on demand, put between Herald's SDK clients and an emulator so
//! that a test can take DynamoDB or SQS away without stopping the shared emulators.
//!
//! [`FaultProxy::start`] listens on a free loopback port and relays every connection to
//! the upstream address while healthy. [`FaultProxy::fail`] turns it into one of three
//! outages, for new connections and for those already open (the SDKs pool theirs):
//! [`Fault::Refuse`] closes the port (connects are refused), [`Fault::Blackhole`] accepts
//! and reads but never answers, [`Fault::Reset`] answers every connection with a TCP
//! reset. [`FaultProxy::heal`] relays again; connections opened during an outage are
//! dropped, as a real network partition would leave them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// How the relay fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing listens: connects are refused, open connections reset.
    Refuse,
    /// Connections are accepted and read, never answered.
    Blackhole,
    /// Every connection, new or open, is reset.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Relay,
    Failing(Fault),
}

/// A relay to one upstream address; see the module documentation.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    relayed: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Relay a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watching) = watch::channel(Mode::Relay);
        let relayed = Arc::new(AtomicU64::new(0));
        tokio::spawn(serve(listener, upstream, watching, relayed.clone()));
        FaultProxy {
            addr,
            mode,
            relayed,
        }
    }

    /// A relay to the host and port of an `http://host:port` URL.
    pub async fn to_url(url: &str) -> FaultProxy {
        let authority = url.trim_start_matches("http://").split('/').next().unwrap();
        let upstream = tokio::net::lookup_host(authority)
            .await
            .unwrap()
            .next()
            .unwrap();
        FaultProxy::start(upstream).await
    }

    /// `http://` and the relay's address, for an SDK's endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn fail(&self, fault: Fault) {
        self.mode.send_replace(Mode::Failing(fault));
    }

    pub fn heal(&self) {
        self.mode.send_replace(Mode::Relay);
    }

    /// Connections relayed to the upstream so far.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Ends the accept loop and every connection (their receivers see it closed).
        self.mode.send_replace(Mode::Failing(Fault::Reset));
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    relayed: Arc<AtomicU64>,
) {
    let addr = listener.local_addr().unwrap();
    let mut listener = Some(listener);
    loop {
        let current = *mode.borrow_and_update();
        match (&listener, current) {
            (Some(_), Mode::Failing(Fault::Refuse)) => listener = None,
            (None, Mode::Relay | Mode::Failing(Fault::Blackhole | Fault::Reset)) => {
                listener = Some(rebind(addr));
            }
            _ => {}
        }
        let Some(open) = &listener else {
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = open.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let watching = mode.clone();
                let relayed = relayed.clone();
                tokio::spawn(async move {
                    connection(client, upstream, watching, relayed).await;
                });
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The same port again after a refusal (address reuse lets it bind at once).
fn rebind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(1024).unwrap()
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    relayed: Arc<AtomicU64>,
) {
    let now = *mode.borrow_and_update();
    let fault = match now {
        Mode::Relay => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return reset(client);
            };
            relayed.fetch_add(1, Ordering::Relaxed);
            let fault = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                fault = outage(&mut mode) => fault,
            };
            reset(server);
            fault
        }
        Mode::Failing(fault) => Some(fault),
    };
    match fault {
        Some(Fault::Blackhole) => swallow(client, mode).await,
        _ => reset(client),
    }
}

/// Waits for the relay to fail; None when the proxy is gone.
async fn outage(mode: &mut watch::Receiver<Mode>) -> Option<Fault> {
    loop {
        if mode.changed().await.is_err() {
            return None;
        }
        if let Mode::Failing(fault) = *mode.borrow_and_update() {
            return Some(fault);
        }
    }
}

/// Reads and discards until the client gives up or the blackhole ends.
async fn swallow(mut client: TcpStream, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut buffer) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow_and_update() != Mode::Failing(Fault::Blackhole) {
                    return reset(client);
                }
            }
        }
    }
}

/// Close with a TCP reset rather than an orderly end.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(proxy: &FaultProxy) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(proxy.addr).await?;
        stream.write_all(b"ping").await?;
        let mut answer = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer))
            .await
            .map_err(|_| std::io::Error::from(ErrorKind::TimedOut))??;
        Ok(answer.to_vec())
    }

    #[tokio::test]
    async fn each_fault_fails_as_named_and_healing_relays_again() {
        let proxy = FaultProxy::start(echo().await).await;
        assert_eq!(round_trip(&proxy).await.unwrap(), b"ping");

        proxy.fail(Fault::Refuse);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = TcpStream::connect(proxy.addr).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

        proxy.fail(Fault::Blackhole);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let silent = round_trip(&proxy).await.unwrap_err();
        assert_eq!(silent.kind(), ErrorKind::TimedOut);

        proxy.fail(Fault::Reset);
        let reset = round_trip(&proxy).await.unwrap_err();
        assert!(
            matches!(
                reset.kind(),
                ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
            ),
            "{reset:?}"
        );

        proxy.heal();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(round_trip(&proxy).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn an_open_connection_is_cut_by_an_outage() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).await.unwrap();
        proxy.fail(Fault::Reset);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = stream.write_all(b"ping").await;
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).await;
        assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
        assert_eq!(proxy.relayed(), 1);
    }
}
