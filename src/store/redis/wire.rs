//! A connection of our own to the primary, for the scans: TCP or TLS, `AUTH` and `SELECT`
//! as the URL asks, then `HSCAN`s whose replies `reply` reads in place. Everything else
//! (commits, pings, the subscription) stays on redis-rs's connections.

use std::sync::Arc;

use redis::{ConnectionAddr, ConnectionInfo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::reply::{self, Page, ReplyError};
use super::{COMMAND_TIMEOUT, CONNECT_TIMEOUT, within};
use crate::config::RedisConfig;
use crate::store::StoreError;

/// Room for a few thousand fields per read: a 10,000-field page is about 1 MiB.
const READ_BUFFER: usize = 256 << 10;

/// An open, authenticated connection to the primary.
pub(super) struct Wire {
    io: BufReader<Either<TcpStream, TlsStream<TcpStream>>>,
    /// The first line of the reply being read.
    line: Vec<u8>,
    /// The command being written.
    command: Vec<u8>,
}

/// How a scan reaches the primary: its address and credentials, and TLS for `rediss://`.
#[derive(Clone)]
pub(super) struct Dial {
    pub(super) info: ConnectionInfo,
    pub(super) tls: Option<TlsConnector>,
}

/// The TLS a scan connection uses for `rediss://`: the roots redis-rs's connections trust
/// (`store.redis_ca_file`, else the system's).
pub(super) fn tls(config: &RedisConfig) -> Result<Option<TlsConnector>, StoreError> {
    if !config.url.is_tls() {
        return Ok(None);
    }
    let roots = crate::tls::client_roots(config.ca_file.as_deref(), true)
        .map_err(StoreError::RedisRoots)?;
    Ok(Some(Arc::new(crate::tls::client_config(roots)).into()))
}

// === impl Wire ===

impl Wire {
    /// Connects, then authenticates and selects the database as the URL says.
    pub(super) async fn open(dial: &Dial) -> Result<Self, StoreError> {
        let io = within(CONNECT_TIMEOUT, connect(dial)).await?;
        let mut wire = Self {
            io: BufReader::with_capacity(READ_BUFFER, io),
            line: Vec::new(),
            command: Vec::new(),
        };
        let settings = dial.info.redis_settings();
        if let Some(password) = settings.password() {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            args.extend(settings.username().map(str::as_bytes));
            args.push(password.as_bytes());
            wire.send(&args).await?;
            wire.ok().await?;
        }
        if settings.db() != 0 {
            let db = settings.db().to_string();
            wire.send(&[b"SELECT", db.as_bytes()]).await?;
            wire.ok().await?;
        }
        Ok(wire)
    }

    /// Sends `HSCAN hash cursor COUNT count`; `page` reads its reply. Sent before the
    /// last page is decoded, it is on its way meanwhile.
    pub(super) async fn send_hscan(
        &mut self,
        hash: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(), StoreError> {
        let (cursor, count) = (cursor.to_string(), count.to_string());
        let args: [&[u8]; 5] = [
            b"HSCAN",
            hash.as_bytes(),
            cursor.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ];
        self.send(&args).await
    }

    /// Reads the reply of the `HSCAN` sent into `page`; returns the next cursor.
    pub(super) async fn page(&mut self, page: &mut Page) -> Result<u64, StoreError> {
        let read = reply::hscan_page(&mut self.io, &mut self.line, page);
        within(COMMAND_TIMEOUT, read).await
    }

    async fn ok(&mut self) -> Result<(), StoreError> {
        within(COMMAND_TIMEOUT, reply::ok(&mut self.io, &mut self.line)).await
    }

    /// Writes a command as a RESP array of bulk strings.
    async fn send(&mut self, args: &[&[u8]]) -> Result<(), StoreError> {
        self.command.clear();
        self.command
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.command
                .extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.command.extend_from_slice(arg);
            self.command.extend_from_slice(b"\r\n");
        }
        let io = self.io.get_mut();
        let write = async {
            io.write_all(&self.command).await?;
            io.flush().await.map_err(ReplyError::from)
        };
        within(COMMAND_TIMEOUT, write).await
    }
}

async fn connect(dial: &Dial) -> Result<Either<TcpStream, TlsStream<TcpStream>>, ReplyError> {
    let (host, port, tls) = match dial.info.addr() {
        ConnectionAddr::Tcp(host, port) => (host, *port, false),
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            ..
        } => (host, *port, true),
        // `store.redis_url` is redis:// or rediss:// and never turns certificate checks off.
        _ => {
            return Err(ReplyError::Unexpected(
                "an address store.redis_url cannot name",
            ));
        }
    };
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    if !tls {
        return Ok(Either::Left(tcp));
    }
    let connector = dial.tls.as_ref();
    let connector = connector.ok_or(ReplyError::Unexpected("rediss:// without TLS roots"))?;
    let name = ServerName::try_from(host.clone())
        .map_err(|_| ReplyError::Unexpected("a host name TLS cannot check"))?;
    Ok(Either::Right(connector.connect(name, tcp).await?))
}
