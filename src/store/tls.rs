//! TLS to PostgreSQL with rustls, as libpq's `sslmode` asks: `disable`, `prefer` and `require`
//! (encrypted, the server's certificate unchecked unless a CA file is given, as libpq does),
//! `verify-ca` (the chain up to the CA file) and `verify-full` (the chain and the host name).
//!
//! With `sslcert` and `sslkey` (a client certificate and its key, PEM), the connection presents
//! the certificate, for servers that authenticate by it (`hostssl … cert` in pg_hba.conf).
//!
//! tokio-postgres parses none of `verify-*`, `sslrootcert`, `sslcert`, `sslkey`: [`parse_url`]
//! takes them out of the connection string and hands tokio-postgres the rest
//! (`sslmode=require` for the `verify-*` modes, the verification being this module's).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it (libpq's and tokio-postgres's default).
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" | "allow" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// How connections to PostgreSQL are encrypted.
#[derive(Debug, Clone, Default)]
pub struct PgTls {
    pub mode: SslMode,
    /// PEM certificates of the authorities the server's certificate must chain to; `system`
    /// for the machine's store (as libpq's `sslrootcert=system`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the server (libpq's `sslcert`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (libpq's `sslkey`).
    pub key_file: Option<PathBuf>,
}

/// The system's bundle of authorities (Debian/Ubuntu, then Fedora), unless SSL_CERT_FILE says.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Splits a connection string into what tokio-postgres parses and the TLS settings it does not
/// (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), in both forms: `postgresql://…?sslmode=…` and `key=value …`.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, PgTls), String> {
    let mut tls = PgTls::default();
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => tls.mode = value.parse()?,
            "sslrootcert" => tls.ca_file = Some(PathBuf::from(value)),
            "sslcert" => tls.cert_file = Some(PathBuf::from(value)),
            "sslkey" => tls.key_file = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if take(k.trim(), v.trim_matches('\''))? => {}
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| e.to_string())?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    Ok((config, tls))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PgTls {
    /// The connector the pool uses; an error names what is wrong with the CA file.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let roots = match &self.ca_file {
            Some(file) => Some(Arc::new(load_roots(file)?)),
            None if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(
                    "sslmode verify-ca and verify-full need a CA file: set sslrootcert in \
                     DATABASE_URL or --database-ca-file (`system` for the machine's authorities)"
                        .into(),
                );
            }
            None => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => {
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?
            }
            // libpq: with a root certificate, `require` verifies as `verify-ca` does.
            (_, Some(roots)) => Arc::new(AnyName(
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?,
            )),
            (_, None) => Arc::new(Unchecked(provider)),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let (chain, key) = load_client_cert(cert, key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("the database client certificate: {e}"))?
            }
            _ => {
                return Err(
                    "a database client certificate needs both sslcert and sslkey (or \
                     --database-cert-file and --database-key-file)"
                        .into(),
                );
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

/// The client certificate chain and its private key (PKCS#8, PKCS#1 or SEC1 PEM).
fn load_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| {
            format!(
                "cannot read the database client certificate {}: {e}",
                cert.display()
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("database client certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "the database client certificate {} holds no PEM certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the database client key {}: {e}", key.display()))?;
    Ok((chain, key))
}

fn load_roots(file: &Path) -> Result<RootCertStore, String> {
    let file = if file == Path::new("system") {
        std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .ok_or("sslrootcert=system: no system certificate bundle found")?
    } else {
        file.to_path_buf()
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("cannot read the database CA file {}: {e}", file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("database CA file {}: {e}", file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("database CA file {}: {e}", file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "the database CA file {} holds no PEM certificate",
            file.display()
        ));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must reach a trusted authority; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA file: encrypted, the certificate taken as offered (the
/// handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_and_the_root_certificate_are_taken_out_of_the_url() {
        let (config, tls) =
            parse_url("postgresql://u@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(config.get_application_name(), Some("x"));
        let (config, tls) =
            parse_url("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(config.get_user(), Some("u"));
        let (config, tls) = parse_url("postgresql://u@h/app?sslmode=disable").unwrap();
        assert_eq!(tls.mode, SslMode::Disable);
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert!(parse_url("postgresql://u@h/app?sslmode=sometimes").is_err());
    }

    #[test]
    fn verify_modes_without_a_ca_file_are_refused() {
        let tls = PgTls {
            mode: SslMode::VerifyFull,
            ..PgTls::default()
        };
        assert!(tls.connector().err().unwrap().contains("CA file"));
    }

    #[test]
    fn client_certificate_and_key_are_taken_out_of_the_url_in_both_forms() {
        let (config, tls) = parse_url(
            "postgresql://u@db.example/app?sslmode=require&sslcert=%2Fc.pem&sslkey=%2Fk.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(tls.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.key_file, Some(PathBuf::from("/k.pem")));
        assert_eq!(config.get_application_name(), Some("x"));
        let (_, tls) = parse_url("host=db user=u sslcert=/c.pem sslkey='/k.pem'").unwrap();
        assert_eq!(tls.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.key_file, Some(PathBuf::from("/k.pem")));
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let tls = PgTls {
            mode: SslMode::Require,
            cert_file: Some(PathBuf::from("/c.pem")),
            ..PgTls::default()
        };
        assert!(tls.connector().err().unwrap().contains("sslkey"));
    }
}
