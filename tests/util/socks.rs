//! A SOCKS5 proxy on 127.0.0.1:0 (RFC 1928, `CONNECT` only; RFC 1929 user/password
//! when given credentials), as microsocks or dante would be. It sends every
//! destination to one upstream address when told to (names no DNS knows then work, as
//! with `socks5h://`), answers "connection refused" for port 9 (a site the proxy cannot
//! reach), and logs the destinations it was asked for, as a name or an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct SocksProxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SocksProxy {
    /// `credentials`: the (user, password) it requires.
    pub async fn start(
        credentials: Option<(&str, &str)>,
        upstream: Option<SocketAddr>,
    ) -> SocksProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind socks");
        let addr = listener.local_addr().expect("socks addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let credentials = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (credentials, seen) = (credentials.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve(client, credentials, upstream, &seen).await;
                });
            }
        });
        SocksProxy { addr, log, task }
    }

    /// `scheme://[user:password@]127.0.0.1:port`.
    pub fn url(&self, scheme: &str, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("{scheme}://{c}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// The destinations asked for so far, `host:port`.
    pub fn destinations(&self) -> Vec<String> {
        self.log.lock().expect("socks log").clone()
    }
}

impl Drop for SocksProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    credentials: Option<(String, String)>,
    upstream: Option<SocketAddr>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if head[0] != 5 || !methods.contains(&wanted) {
        return client.write_all(&[5, 0xff]).await;
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, pass)) = credentials {
        let given_user = read_field(&mut client, true).await?;
        let given_pass = read_field(&mut client, false).await?;
        let ok = given_user == user.as_bytes() && given_pass == pass.as_bytes();
        client.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            return Ok(());
        }
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            IpAddr::from(Ipv4Addr::from(ip)).to_string()
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            format!("[{}]", Ipv6Addr::from(ip))
        }
        _ => {
            let name = read_field(&mut client, false).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
    };
    let port = client.read_u16().await?;
    log.lock()
        .expect("socks log")
        .push(format!("{host}:{port}"));
    let reply = |status: u8| [5, status, 0, 1, 0, 0, 0, 0, 0, 0];
    let server = match (port, upstream) {
        (9, _) => None,
        (_, Some(addr)) => TcpStream::connect(addr).await.ok(),
        (_, None) => TcpStream::connect(format!("{host}:{port}")).await.ok(),
    };
    let Some(mut server) = server else {
        return client.write_all(&reply(5)).await;
    };
    client.write_all(&reply(0)).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// A length-prefixed field; `version`: preceded by the subnegotiation version byte.
async fn read_field(stream: &mut TcpStream, version: bool) -> std::io::Result<Vec<u8>> {
    if version {
        stream.read_u8().await?;
    }
    let len = stream.read_u8().await?;
    let mut field = vec![0u8; len as usize];
    stream.read_exact(&mut field).await?;
    Ok(field)
}
