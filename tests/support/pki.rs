//! A throwaway certificate authority, a server certificate for 127.0.0.1
//! and `localhost` and a client certificate, written as PEM files for
//! `redis-server` and nginx (and the CA for a browser to trust).

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cloakroom test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let server: &[&str] = &["127.0.0.1", "localhost"];
        for (name, sans) in [("server", server), ("client", &["cloakroom"])] {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, sans[0]);
            for san in sans {
                params.subject_alt_names.push(match san.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*san).try_into().unwrap()),
                });
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    /// `ca`, `server`, `server-key`, `client` or `client-key`.
    pub fn path(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join(format!("{name}.pem"));
        path.to_string_lossy().into_owned()
    }
}
