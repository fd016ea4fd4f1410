//! Maps the errors of the HTTP stack to the stable [`ErrorKind`]s stored per page, and
//! says which failures are transient (worth trying again later).
//!
//! Transient: timeouts, connection failures (refused, reset, aborted, unreachable),
//! proxy failures (error kind `proxy`: the proxy unreachable, refusing, or asking for
//! credentials; the pool rests a failing proxy meanwhile), a
//! transfer cut short (the connection closed before the response was complete: a
//! body shorter than its Content-Length or a chunked body without its last chunk) and
//! temporary DNS failures (`EAI_AGAIN`, told apart by the resolver's message). Not
//! transient: a name that does not exist, TLS failures, caps (`too_large`,
//! `too_many_redirects`), `blocked`, and malformed responses (a bad status line, bad
//! chunk sizes, undecodable content): a server that sent garbage once will most likely
//! send it again, while a cut transfer is as likely a network hiccup.
//!
//! The stack reports errors as chains (client error -> connect error -> io error ->
//! rustls error ...), and `io::Error::source` skips the error it wraps, so the walk
//! below also looks inside each `io::Error`.

use std::error::Error as StdError;
use std::io;

use super::guard::Blocked;
use super::proxy::ProxyFailure;
use crate::journal::ErrorKind;

/// Why a fetch ended without a response.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) transient: bool,
}

impl Failure {
    /// A failure whose kind alone says whether it is transient: timeouts and connection
    /// failures are, the rest are not.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            transient: matches!(
                kind,
                ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Proxy
            ),
        }
    }
}

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

/// The failure of a transport error, with a message made of the chain's distinct parts.
pub(crate) fn classify(err: &(dyn StdError + 'static)) -> Failure {
    let links = chain(err);
    if let Some(blocked) = links.iter().find_map(|e| e.downcast_ref::<Blocked>()) {
        return Failure::new(ErrorKind::Blocked, blocked.to_string());
    }
    if let Some(proxy) = links.iter().find_map(|e| e.downcast_ref::<ProxyFailure>()) {
        return Failure::new(ErrorKind::Proxy, proxy.to_string());
    }
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
    let mut failure = Failure::new(kind_of(&links), message);
    match failure.kind {
        ErrorKind::Dns => failure.transient = failure.message.contains("Temporary failure"),
        ErrorKind::Protocol => failure.transient = cut_short(&links),
        _ => {}
    }
    failure
}

/// Whether the connection ended before the response did (as opposed to a response
/// that could not be understood).
fn cut_short(links: &[&(dyn StdError + 'static)]) -> bool {
    links.iter().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_incomplete_message())
    })
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
        let failure = classify(&inner);
        assert_eq!(failure.kind, ErrorKind::Tls);
        assert!(failure.message.contains("decrypt"), "{failure:?}");
        assert!(!failure.transient);
    }

    fn io(kind: io::ErrorKind, text: &str) -> io::Error {
        io::Error::new(kind, text.to_string())
    }

    #[test]
    fn connection_failures_are_transient_connect_errors() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
        ] {
            let failure = classify(&io(kind, "gone"));
            assert_eq!(
                (failure.kind, failure.transient),
                (ErrorKind::Connect, true)
            );
        }
        let timeout = classify(&io(io::ErrorKind::TimedOut, "slow"));
        assert_eq!(
            (timeout.kind, timeout.transient),
            (ErrorKind::Timeout, true)
        );
    }

    #[test]
    fn cut_transfers_are_transient_and_malformed_ones_are_not() {
        let cut = classify(&io(
            io::ErrorKind::UnexpectedEof,
            "end of file before message length reached",
        ));
        assert_eq!((cut.kind, cut.transient), (ErrorKind::Protocol, true));
        let bad = classify(&io(io::ErrorKind::InvalidInput, "Invalid chunk size line"));
        assert_eq!((bad.kind, bad.transient), (ErrorKind::Protocol, false));
    }

    /// A resolver error as hyper-util wraps it: "dns error" around the lookup's io error.
    #[derive(Debug)]
    struct DnsError(io::Error);

    impl std::fmt::Display for DnsError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("dns error")
        }
    }

    impl StdError for DnsError {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_temporary_dns_failures_are_transient() {
        let lookup = |detail: &str| {
            DnsError(io::Error::other(format!(
                "failed to lookup address information: {detail}"
            )))
        };
        let again = classify(&lookup("Temporary failure in name resolution"));
        assert_eq!((again.kind, again.transient), (ErrorKind::Dns, true));
        let nxdomain = classify(&lookup("Name or service not known"));
        assert_eq!((nxdomain.kind, nxdomain.transient), (ErrorKind::Dns, false));
    }
}
