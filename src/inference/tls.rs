//! TLS settings of a server: a CA to trust (a private one), a client certificate and key (mutual
//! TLS), and the name the server's certificate must carry when it is not the address's host (a
//! server reached by IP, a tunnel). Files are read and checked at start, before any connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The largest PEM file read: a CA bundle is some hundred kB.
const MAX_PEM_BYTES: u64 = 4 << 20;

/// The properties of a TLS setting, for messages.
pub const TLS_PROPERTIES: &str =
    "the TLS properties (tls-ca-file, tls-certificate, tls-key, tls-server-name)";

/// The TLS properties as set; empty is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// The files of [`TlsSettings`], read and checked.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM of the CA certificates to trust besides the public ones.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub server_name: Option<String>,
}

impl TlsSettings {
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.certificate.is_some()
            || self.key.is_some()
            || self.server_name.is_some()
    }

    /// Reads every file and checks it holds what it should; errors name the property and file.
    pub fn load(&self) -> Result<TlsFiles, String> {
        let ca_pem = self
            .ca_file
            .as_deref()
            .map(|path| read_certificates("tls-ca-file", path))
            .transpose()?;
        let identity = match (&self.certificate, &self.key) {
            (Some(certificate), Some(key)) => {
                let chain = read_certificates("tls-certificate", certificate)?;
                let key_pem = read_pem("tls-key", key)?;
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                    format!(
                        "property 'tls-key': {} holds no PEM private key",
                        key.display()
                    )
                })?;
                Some((chain, key_pem))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err("property 'tls-certificate' is set without 'tls-key'".into());
            }
            (None, Some(_)) => {
                return Err("property 'tls-key' is set without 'tls-certificate'".into());
            }
        };
        if let Some(name) = &self.server_name
            && ServerName::try_from(name.as_str()).is_err()
        {
            return Err(format!(
                "property 'tls-server-name': '{name}' is not a host name"
            ));
        }
        Ok(TlsFiles {
            ca_pem,
            identity,
            server_name: self.server_name.clone(),
        })
    }
}

fn read_pem(property: &str, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("property '{property}': cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "property '{property}': {} is larger than {MAX_PEM_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

fn read_certificates(property: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem = read_pem(property, path)?;
    let certificates = certificates_of(&pem);
    if certificates.is_empty() {
        return Err(format!(
            "property '{property}': {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(pem)
}

fn certificates_of(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

impl TlsFiles {
    /// A rustls client configuration (the HTTP client's): the public roots and the CA file,
    /// the client certificate, and the server's certificate checked against the server name.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &self.ca_pem {
            for certificate in certificates_of(ca) {
                roots
                    .add(certificate)
                    .map_err(|e| format!("property 'tls-ca-file': {e}"))?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.server_name {
            Some(name) => {
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| format!("TLS: {e}"))?;
                let name = ServerName::try_from(name.clone())
                    .map_err(|_| format!("property 'tls-server-name': '{name}'"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NamedServer {
                        inner: verifier,
                        name,
                    }))
            }
            None => builder.with_root_certificates(roots),
        };
        let config = match &self.identity {
            Some((chain, key)) => {
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| "property 'tls-key': no PEM private key".to_string())?;
                builder
                    .with_client_auth_cert(certificates_of(chain), key)
                    .map_err(|e| format!("properties 'tls-certificate' and 'tls-key': {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// Checks the server's certificate as the standard verifier does, for `name` instead of the
/// address's host.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _address_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("neuralfx-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn files_that_are_not_what_they_should_be_are_named() {
        let not_pem = temp_file("not-pem", "hello\n");
        let settings = TlsSettings {
            ca_file: Some(not_pem.clone()),
            ..Default::default()
        };
        let err = settings.load().unwrap_err();
        assert!(
            err.contains("property 'tls-ca-file'") && err.contains("holds no PEM certificate"),
            "{err}"
        );
        let settings = TlsSettings {
            ca_file: Some("/no/such/ca.pem".into()),
            ..Default::default()
        };
        let err = settings.load().unwrap_err();
        assert!(err.contains("cannot read /no/such/ca.pem"), "{err}");
        let settings = TlsSettings {
            certificate: Some(not_pem.clone()),
            ..Default::default()
        };
        assert!(settings.load().unwrap_err().contains("without 'tls-key'"));
        let settings = TlsSettings {
            server_name: Some("not a name".into()),
            ..Default::default()
        };
        assert!(settings.load().unwrap_err().contains("'tls-server-name'"));
        std::fs::remove_file(not_pem).unwrap();
        assert!(!TlsSettings::default().is_set());
    }
}
