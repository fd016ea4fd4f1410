//! HTTPS against real rustls servers on loopback with a private certificate authority
//! made by rcgen: the page and its HTTP version negotiated by ALPN, failing closed on an
//! untrusted authority, a wrong name or a server that does not speak TLS, and the real
//! binary's hidden `--tls-extra-root` flag.

use std::process::{Command, Output};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;
use webspool::fetch::FetchConfig;
use webspool::journal::{ErrorKind, Journal, Outcome};

use crate::util::server::reply;
use crate::util::{self, body_of, page_of, status_of, TestServer};

/// A private certificate authority.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate().expect("ca key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca certificate"),
        }
    }

    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key.
    pub(crate) fn leaf(
        &self,
        names: &[&str],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        (vec![cert.der().clone()], key.into())
    }
}

/// An HTTPS server offering `alpn`, answering every request with its HTTP version and path.
pub(crate) async fn https_server(
    (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    alpn: &[&[u8]],
) -> TestServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    TestServer::start_with(
        |req| async move { reply(200, format!("{:?} {}", req.version(), req.uri().path())) },
        move |tcp| {
            let acceptor = acceptor.clone();
            async move { acceptor.accept(tcp).await.ok() }
        },
    )
    .await
}

fn trusting(ca: &Ca) -> FetchConfig {
    FetchConfig {
        extra_roots: vec![ca.der()],
        ..util::quick_fetch()
    }
}

fn version_of(journal: &Journal, url: &str) -> String {
    match page_of(journal, url).outcome {
        Outcome::Response { version, .. } => version,
        Outcome::Error { kind, message } => panic!("{url}: {kind}: {message}"),
    }
}

fn tls_error(journal: &Journal, url: &str) -> String {
    match page_of(journal, url).outcome {
        Outcome::Error {
            kind: ErrorKind::Tls,
            message,
        } => message,
        other => panic!("{url}: expected a TLS error, got {other:?}"),
    }
}

pub(crate) const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pages_are_fetched_over_http2_when_offered() {
    let ca = Ca::new("webspool test CA");
    let server = https_server(ca.leaf(&["localhost", "127.0.0.1"]), BOTH).await;
    let port = server.addr.port();
    let urls = [
        format!("https://localhost:{port}/by-name"),
        format!("https://127.0.0.1:{port}/by-ip"),
    ];
    let (_dir, journal, summary) = util::crawl_lines(&urls, trusting(&ca)).await;
    assert_eq!((summary.fetched, summary.failed), (2, 0));
    for (url, path) in urls.iter().zip(["/by-name", "/by-ip"]) {
        assert_eq!(status_of(&page_of(&journal, url)), 200);
        assert_eq!(version_of(&journal, url), "HTTP/2.0", "{url}");
        assert_eq!(
            body_of(&journal, url),
            format!("HTTP/2.0 {path}").as_bytes()
        );
        assert_eq!(server.hits(path), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_is_used_when_the_server_only_offers_http1() {
    let ca = Ca::new("webspool test CA");
    let server = https_server(ca.leaf(&["localhost"]), &[b"http/1.1"]).await;
    let url = format!("https://localhost:{}/one", server.addr.port());
    let (_dir, journal, _) = util::crawl_lines(std::slice::from_ref(&url), trusting(&ca)).await;
    assert_eq!(version_of(&journal, &url), "HTTP/1.1");
    assert_eq!(body_of(&journal, &url), b"HTTP/1.1 /one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_authorities_fail_closed() {
    let ca = Ca::new("webspool test CA");
    let server = https_server(ca.leaf(&["localhost"]), BOTH).await;
    let url = format!("https://localhost:{}/secret-page", server.addr.port());
    // Neither with the default roots only, nor trusting another private authority.
    let other = Ca::new("some other CA");
    for config in [util::quick_fetch(), trusting(&other)] {
        let (_dir, journal, summary) = util::crawl_lines(std::slice::from_ref(&url), config).await;
        let message = tls_error(&journal, &url);
        assert!(message.contains("certificate"), "{message}");
        assert_eq!((summary.fetched, summary.failed), (0, 1));
        assert_eq!(journal.status().unwrap().errors.get("tls"), Some(&1));
        assert_eq!(journal.status().unwrap().stored_body_bytes, 0);
    }
    assert_eq!(
        server.hits("/secret-page"),
        0,
        "no request sent over an untrusted connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_for_another_name_are_refused() {
    let ca = Ca::new("webspool test CA");
    let other_name = https_server(ca.leaf(&["other.test"]), BOTH).await;
    let name_only = https_server(ca.leaf(&["localhost"]), BOTH).await;
    let urls = [
        format!("https://localhost:{}/a", other_name.addr.port()),
        // A certificate for `localhost` does not cover the address 127.0.0.1.
        format!("https://127.0.0.1:{}/b", name_only.addr.port()),
    ];
    let (_dir, journal, summary) = util::crawl_lines(&urls, trusting(&ca)).await;
    for url in &urls {
        let message = tls_error(&journal, url);
        assert!(message.contains("certificate"), "{message}");
    }
    assert_eq!((summary.fetched, summary.failed), (0, 2));
    assert_eq!(other_name.hits("/a") + name_only.hits("/b"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let plain = TestServer::start(|_req| async { reply(200, "plain text") }).await;
    let url = format!("https://127.0.0.1:{}/", plain.addr.port());
    let (_dir, journal, _) =
        util::crawl_lines(std::slice::from_ref(&url), util::quick_fetch()).await;
    tls_error(&journal, &url);
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(util::bin())
        .args(args)
        .env_remove("WEBSPOOL_JOURNAL")
        .output()
        .expect("run webspool")
}

fn status_json(journal: &std::path::Path) -> serde_json::Value {
    let journal = journal.as_os_str();
    let out = run(&[
        "status".as_ref(),
        "--journal".as_ref(),
        journal,
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_trusts_an_extra_root_from_a_pem_file() {
    let ca = Ca::new("webspool test CA");
    let server = https_server(ca.leaf(&["localhost", "127.0.0.1"]), BOTH).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "no certificate here\n").unwrap();
    let n = 5;
    let lines: Vec<String> = (0..n)
        .map(|i| format!("https://localhost:{}/bin/{i}", server.addr.port()))
        .collect();
    let urls = util::url_file(&dir, &lines);

    let result = tokio::task::spawn_blocking(move || {
        let crawl = |journal: &str, root: Option<&std::path::Path>| {
            let journal = dir.path().join(journal);
            let mut args: Vec<std::ffi::OsString> = ["crawl", "--urls"].map(Into::into).into();
            args.push(urls.clone().into());
            args.extend(["--journal".into(), journal.clone().into()]);
            args.extend(["--quiet", "--timeout", "5"].map(Into::into));
            if let Some(root) = root {
                args.extend(["--tls-extra-root".into(), root.into()]);
            }
            (run(&args), journal)
        };
        let trusted = crawl("trusted", Some(&ca_pem));
        let untrusted = crawl("untrusted", None);
        let bad_pem = crawl("bad", Some(&not_pem));
        (trusted, untrusted, bad_pem, dir)
    })
    .await
    .unwrap();
    let ((out, journal), (out2, journal2), (out3, _), _dir) = result;

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status_json(&journal);
    assert_eq!(status["fetched"], n, "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    for i in 0..n {
        assert_eq!(server.hits(&format!("/bin/{i}")), 1);
    }

    // Without the flag the same crawl completes, every page failing closed with `tls`.
    assert!(
        out2.status.success(),
        "{}",
        String::from_utf8_lossy(&out2.stderr)
    );
    let status = status_json(&journal2);
    assert_eq!(status["fetched"], 0, "{status}");
    assert_eq!(status["errors"]["tls"], n, "{status}");

    // A file without a certificate is a setup error, before anything is fetched.
    assert_eq!(out3.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out3.stderr);
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
    // The pages and, once, robots.txt: only by the run that trusted the server.
    assert_eq!(server.hits("/robots.txt"), 1);
    assert_eq!(server.all_hits().values().sum::<u64>(), n + 1);
}
