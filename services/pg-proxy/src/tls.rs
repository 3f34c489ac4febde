//! TLS to Postgres (issue 13 item 11): which `sslmode` applies, and the rustls connector.
//!
//! tokio-postgres only knows `disable`, `prefer` and `require`, and with `NoTls` a `prefer`
//! silently runs in plaintext. So `sslmode` and `sslrootcert` are taken out of DATABASE_URL
//! here, decided by [`decide`], and enforced by a rustls connector
//! (tokio-postgres-rustls, ring, webpki roots):
//!
//! | `sslmode` | private host¹ | public host, not production | public host, `ENVIRONMENT=production` |
//! |---|---|---|---|
//! | unset | disable | prefer | **verify-full** |
//! | `disable` | disable | disable | **refused at start-up** |
//! | `prefer` | prefer | prefer | **verify-full** |
//! | `require` | require | require | require (warning: the server is not authenticated) |
//! | `verify-ca` | verify-ca | verify-ca | verify-ca |
//! | `verify-full` | verify-full | verify-full | verify-full |
//!
//! ¹ `localhost`, `*.localhost`, `*.railway.internal` (Railway's private, WireGuard network),
//! loopback, RFC 1918 (10/8, 172.16/12, 192.168/16) and ULA (fc00::/7) addresses, Unix
//! sockets; every host of a multi-host URL must be private.
//!
//! As in libpq: `prefer` tries TLS and falls back to plaintext, `require` encrypts without
//! checking the certificate, `verify-ca` checks the chain, `verify-full` the chain and the
//! host name. Roots: the file named by `sslrootcert` (PEM) if given, else the Mozilla roots
//! (webpki-roots; `sslrootcert=system` means the same).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS policy in force for the database connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext.
    Disable,
    /// TLS if the server offers it (certificate not checked), else plaintext.
    Prefer,
    /// TLS required; the certificate is not checked.
    Require,
    /// TLS required; the certificate chain is checked, not the host name.
    VerifyCa,
    /// TLS required; chain and host name are checked.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value (`allow` is treated as `prefer`).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres must do: never, try, or insist on TLS.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            Self::Disable => D::Disable,
            Self::Prefer => D::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => D::Require,
        }
    }
}

/// True for a host on a private network, where plaintext may be acceptable.
pub fn is_private_host(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => is_private_name(name),
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

fn is_private_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || v6
                        .to_ipv4_mapped()
                        .is_some_and(|v4| v4.is_loopback() || v4.is_private())
            }
        };
    }
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".railway.internal")
}

/// The outcome of [`decide`]: the mode in force and, when it differs from what was asked or
/// is weak, a note for the start-up log (never containing the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mode in force.
    pub mode: SslMode,
    /// Why the mode was upgraded, or a warning about it.
    pub note: Option<&'static str>,
}

/// Decides the TLS mode from the environment, the URL's hosts and the requested `sslmode`
/// (table in the module docs). `Err` carries the problem, naming DATABASE_URL's parameter but
/// never its value.
pub fn decide(
    production: bool,
    hosts: &[Host],
    requested: Option<SslMode>,
) -> Result<Decision, String> {
    let private = !hosts.is_empty() && hosts.iter().all(is_private_host);
    let strict = production && !private;
    let decision = |mode, note| Ok(Decision { mode, note });
    match (requested, strict) {
        (Some(SslMode::Disable), true) => Err(
            "sslmode=disable is refused in production for a database on a public network; \
             use sslmode=verify-full (or require), or a private host"
                .into(),
        ),
        (None | Some(SslMode::Prefer), true) => decision(
            SslMode::VerifyFull,
            Some("production database on a public network: TLS required with certificate and host name verification (sslmode=verify-full)"),
        ),
        (None, false) if private => decision(SslMode::Disable, None),
        (None, false) => decision(SslMode::Prefer, None),
        (Some(SslMode::Require), true) => decision(
            SslMode::Require,
            Some("sslmode=require encrypts but does not authenticate the database server; prefer sslmode=verify-full"),
        ),
        (Some(mode), _) => decision(mode, None),
    }
}

/// DATABASE_URL with `sslmode` and `sslrootcert` taken out (tokio-postgres refuses
/// `verify-ca`/`verify-full` and ignores the root file), plus their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    /// The connection string for tokio-postgres.
    pub rest: String,
    /// The `sslmode` value, if present.
    pub sslmode: Option<String>,
    /// The `sslrootcert` value, if present.
    pub sslrootcert: Option<String>,
}

/// Splits the TLS parameters out of a `postgres://` URL (query string) or a key=value string.
pub fn split_tls_params(raw: &str) -> TlsParams {
    let mut params = TlsParams {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            params.sslmode = Some(value);
            true
        }
        "sslrootcert" => {
            params.sslrootcert = Some(value);
            true
        }
        _ => false,
    };
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let (base, query) = raw.split_once('?').unwrap_or((raw, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned();
                !take(k, v)
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        TlsParams { rest, ..params }
    } else {
        // key=value pairs separated by spaces; values may be single-quoted with \ escapes.
        let mut kept = Vec::new();
        let mut rest = raw.trim();
        while !rest.is_empty() {
            let end = pair_end(rest);
            let pair = &rest[..end];
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let unquoted = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .map(|v| v.replace("\\'", "'").replace("\\\\", "\\"))
                .unwrap_or_else(|| v.to_owned());
            if !take(k.trim(), unquoted) {
                kept.push(pair);
            }
            rest = rest[end..].trim_start();
        }
        TlsParams {
            rest: kept.join(" "),
            ..params
        }
    }
}

/// Length of the first `key=value` pair of `s`, honouring a single-quoted value.
fn pair_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'\'' => quoted = !quoted,
            b' ' | b'\t' | b'\n' if !quoted => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(rootcert: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) if path != Path::new("system") => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                anyhow::anyhow!("DATABASE_URL: sslrootcert file cannot be read: {e}")
            })? {
                store.add(cert.map_err(|e| {
                    anyhow::anyhow!("DATABASE_URL: sslrootcert holds an invalid certificate: {e}")
                })?)?;
            }
            if store.is_empty() {
                anyhow::bail!("DATABASE_URL: sslrootcert holds no certificate");
            }
        }
        _ => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// The connector for `mode`. For `disable` it is never used (tokio-postgres is told not to
/// start TLS), but one connector type keeps the pool simple.
pub fn connector(mode: SslMode, rootcert: Option<&Path>) -> anyhow::Result<MakeRustlsConnect> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(rootcert)?), provider())
                    .build()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => builder
            .with_root_certificates(roots(rootcert)?)
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` / `require`: any certificate, as libpq does; the handshake signature is still
/// checked so the session keys belong to whoever holds the presented certificate.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the webpki chain check, with a host-name mismatch forgiven.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A path from `sslrootcert`.
pub fn rootcert_path(value: Option<&str>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(name: &str) -> Host {
        Host::Tcp(name.into())
    }

    fn mode(production: bool, host: &str, requested: Option<&str>) -> Result<SslMode, String> {
        decide(
            production,
            &[tcp(host)],
            requested.map(|r| SslMode::parse(r).unwrap()),
        )
        .map(|d| d.mode)
    }

    #[test]
    fn private_hosts_are_localhost_railway_internal_rfc1918_ula_and_loopback() {
        for private in [
            "localhost",
            "db.localhost",
            "postgres.railway.internal",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "172.31.255.255",
            "192.168.1.10",
            "::1",
            "[fd12:3456::1]",
            "fc00::5",
        ] {
            assert!(is_private_name(private), "{private}");
        }
        for public in [
            "db.example.com",
            "roundhouse.proxy.rlwy.net",
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "railway.internal.example.com",
            "localhost.example.com",
        ] {
            assert!(!is_private_name(public), "{public}");
        }
        assert!(is_private_host(&Host::Unix("/run/postgresql".into())));
    }

    #[test]
    fn production_requires_verified_tls_for_a_public_host_unless_asked_otherwise() {
        assert_eq!(mode(true, "db.example.com", None), Ok(SslMode::VerifyFull));
        assert_eq!(
            mode(true, "db.example.com", Some("prefer")),
            Ok(SslMode::VerifyFull)
        );
        assert_eq!(
            mode(true, "db.example.com", Some("require")),
            Ok(SslMode::Require)
        );
        assert_eq!(
            mode(true, "db.example.com", Some("verify-ca")),
            Ok(SslMode::VerifyCa)
        );
        assert_eq!(
            mode(true, "db.example.com", Some("verify-full")),
            Ok(SslMode::VerifyFull)
        );
    }

    #[test]
    fn sslmode_disable_is_refused_in_production_for_a_public_host_only() {
        let err = mode(true, "db.example.com", Some("disable")).unwrap_err();
        assert!(err.contains("sslmode=disable"), "{err}");
        assert_eq!(
            mode(true, "postgres.railway.internal", Some("disable")),
            Ok(SslMode::Disable)
        );
        assert_eq!(
            mode(false, "db.example.com", Some("disable")),
            Ok(SslMode::Disable)
        );
    }

    #[test]
    fn private_hosts_and_development_keep_what_they_ask_for() {
        // The local tests: no sslmode, loopback, no TLS.
        assert_eq!(mode(false, "127.0.0.1", None), Ok(SslMode::Disable));
        assert_eq!(
            mode(true, "postgres.railway.internal", None),
            Ok(SslMode::Disable)
        );
        assert_eq!(mode(false, "db.example.com", None), Ok(SslMode::Prefer));
        assert_eq!(
            mode(false, "127.0.0.1", Some("require")),
            Ok(SslMode::Require)
        );
    }

    #[test]
    fn every_host_of_a_multi_host_url_must_be_private() {
        let hosts = [tcp("10.0.0.1"), tcp("db.example.com")];
        assert_eq!(
            decide(true, &hosts, None).unwrap().mode,
            SslMode::VerifyFull
        );
        let hosts = [tcp("10.0.0.1"), tcp("10.0.0.2")];
        assert_eq!(decide(true, &hosts, None).unwrap().mode, SslMode::Disable);
    }

    #[test]
    fn a_weak_or_upgraded_mode_comes_with_a_note() {
        let up = decide(true, &[tcp("db.example.com")], None).unwrap();
        assert!(up.note.unwrap().contains("verify-full"));
        let weak = decide(true, &[tcp("db.example.com")], Some(SslMode::Require)).unwrap();
        assert!(weak.note.unwrap().contains("does not authenticate"));
        assert_eq!(decide(false, &[tcp("127.0.0.1")], None).unwrap().note, None);
    }

    #[test]
    fn tls_parameters_are_split_out_of_both_url_forms() {
        let p = split_tls_params(
            "postgres://u:p@db.example.com:5432/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(
            p.rest,
            "postgres://u:p@db.example.com:5432/app?application_name=x"
        );
        assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        let p = split_tls_params("postgres://u@h/db?sslmode=require");
        assert_eq!(p.rest, "postgres://u@h/db");
        let p = split_tls_params("host=db user=app password='a b\\'c' sslmode=verify-ca dbname=x");
        assert_eq!(p.rest, "host=db user=app password='a b\\'c' dbname=x");
        assert_eq!(p.sslmode.as_deref(), Some("verify-ca"));
        let p = split_tls_params("postgres://u@h/db");
        assert_eq!(
            p,
            TlsParams {
                rest: "postgres://u@h/db".into(),
                sslmode: None,
                sslrootcert: None
            }
        );
    }

    #[test]
    fn every_mode_builds_a_connector() {
        for m in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert!(connector(m, None).is_ok(), "{m:?}");
        }
        let missing = connector(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem")));
        let err = missing.err().expect("a missing root file is an error");
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }
}
