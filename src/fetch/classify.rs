//! Maps the errors of the HTTP stack to the stable [`ErrorKind`]s stored per page.
//!
//! The stack reports errors as chains (client error -> connect error -> io error ->
//! rustls error ...), and `io::Error::source` skips the error it wraps, so the walk
//! below also looks inside each `io::Error`.

use std::error::Error as StdError;
use std::io;

use crate::journal::ErrorKind;

/// Every error in the chain, outermost first, including errors wrapped by `io::Error`.
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
        if out.len() > 32 {
            break;
        }
    }
    out
}

/// The kind of a transport error and a message made of the chain's distinct parts.
pub(crate) fn classify(err: &(dyn StdError + 'static)) -> (ErrorKind, String) {
    let links = chain(err);
    let mut message = String::new();
    for link in &links {
        let text = link.to_string();
        if !text.is_empty() && !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    (kind_of(&links), message)
}

fn kind_of(links: &[&(dyn StdError + 'static)]) -> ErrorKind {
    if links
        .iter()
        .any(|e| e.downcast_ref::<rustls::Error>().is_some())
    {
        return ErrorKind::Tls;
    }
    if links.iter().any(|e| e.to_string() == "dns error") {
        return ErrorKind::Dns;
    }
    for link in links {
        if let Some(io) = link.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return ErrorKind::Timeout,
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::NotConnected
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => return ErrorKind::Connect,
                _ => {}
            }
        }
    }
    let connect = links.iter().any(|e| {
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|c| c.is_connect())
    });
    if connect {
        ErrorKind::Connect
    } else {
        ErrorKind::Protocol
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_wrapped_errors_are_seen() {
        let inner = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let (kind, message) = classify(&inner);
        assert_eq!(kind, ErrorKind::Tls);
        assert!(message.contains("decrypt"), "{message}");
    }

    #[test]
    fn reset_is_a_connect_error() {
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(classify(&e).0, ErrorKind::Connect);
    }
}
