//! Where certificates from an ACME CA (Let's Encrypt, pebble) live in the state directory, next
//! to the local CA's:
//!
//! ```text
//! <dir>/acme/accounts/<host>-<hash>.json  0600, one ACME account (its private key) per directory URL
//! <dir>/certs/acme/<name>.pem             the chain the ACME CA returned, leaf first
//! <dir>/certs/acme/<name>-key.pem         0600
//! <dir>/certs/acme/<name>.json            how to renew it (directory, domains, challenge)
//! ```
//!
//! The ACME protocol itself is the CLI's; this module only stores and loads, with the same
//! atomic, 0600-at-creation writes as the local CA.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use super::files::{check_key_mode, create_private_dir, exists, read_to_string, write_atomic};
use super::Store;
use crate::ca::{pem_encode, Leaf};
use crate::{Error, Result};

impl Store {
    /// `<dir>/acme/accounts`.
    pub fn acme_accounts_dir(&self) -> PathBuf {
        self.dir.join("acme").join("accounts")
    }

    /// The account file for an ACME directory URL: the host for people, a hash for uniqueness.
    pub fn acme_account_path(&self, directory_url: &str) -> PathBuf {
        let host: String = directory_url
            .split("://")
            .nth(1)
            .unwrap_or(directory_url)
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = Sha256::digest(directory_url.as_bytes());
        let short: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        self.acme_accounts_dir()
            .join(format!("{host}-{short}.json"))
    }

    /// The saved account for `directory_url` (its JSON, key included), if there is one. A file
    /// readable by others is refused, as for any key.
    pub fn read_acme_account(&self, directory_url: &str) -> Result<Option<String>> {
        let path = self.acme_account_path(directory_url);
        if !exists(&path)? {
            return Ok(None);
        }
        check_key_mode(&path)?;
        read_to_string(&path).map(Some)
    }

    /// Saves an account's JSON (it holds the account key), 0600.
    pub fn save_acme_account(&self, directory_url: &str, json: &str) -> Result<PathBuf> {
        let path = self.acme_account_path(directory_url);
        create_private_dir(&self.acme_accounts_dir())?;
        write_atomic(&path, json.as_bytes(), 0o600)?;
        Ok(path)
    }

    /// `<dir>/certs/acme`.
    pub fn acme_certs_dir(&self) -> PathBuf {
        self.certs_dir().join("acme")
    }

    /// `<dir>/certs/acme/<name>.pem`.
    pub fn acme_cert_path(&self, name: &str) -> PathBuf {
        self.acme_certs_dir().join(format!("{name}.pem"))
    }

    /// `<dir>/certs/acme/<name>-key.pem`.
    pub fn acme_key_path(&self, name: &str) -> PathBuf {
        self.acme_certs_dir().join(format!("{name}-key.pem"))
    }

    /// `<dir>/certs/acme/<name>.json`.
    pub fn acme_record_path(&self, name: &str) -> PathBuf {
        self.acme_certs_dir().join(format!("{name}.json"))
    }

    /// Saves a certificate from an ACME CA: key first (0600), then the chain, then the renewal
    /// record, each replaced atomically, so a reader sees an old or a new file, never half of one.
    pub fn save_acme_cert(
        &self,
        name: &str,
        chain_pem: &str,
        key_pem: &str,
        record_json: &str,
    ) -> Result<Leaf> {
        create_private_dir(&self.acme_certs_dir())?;
        write_atomic(&self.acme_key_path(name), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.acme_cert_path(name), chain_pem.as_bytes(), 0o644)?;
        write_atomic(&self.acme_record_path(name), record_json.as_bytes(), 0o644)?;
        self.load_acme_leaf(name)
    }

    /// The names of every saved ACME certificate (those with a renewal record), sorted.
    pub fn acme_names(&self) -> Result<Vec<String>> {
        let dir = self.acme_certs_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io("list", dir, err)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let path = entry.map_err(|err| Error::io("list", &dir, err))?.path();
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(name) = file.strip_suffix(".json") {
                if !name.starts_with('.') {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The renewal record saved with `name`.
    pub fn read_acme_record(&self, name: &str) -> Result<String> {
        let path = self.acme_record_path(name);
        if !exists(&path)? {
            return Err(Error::Damaged {
                path,
                problem: format!("there is no ACME certificate named {name}"),
                fix: format!(
                    "get it with `protolab certs acme --directory URL --domain {name} --http-01 ADDR`"
                ),
            });
        }
        read_to_string(&path)
    }

    /// Loads a saved ACME certificate: the whole chain as the CA sent it, and its key (0600).
    pub fn load_acme_leaf(&self, name: &str) -> Result<Leaf> {
        let cert_path = self.acme_cert_path(name);
        let key_path = self.acme_key_path(name);
        let refetch = format!("run `protolab certs renew --force {name}` to fetch a new one");
        let cert_pem = read_to_string(&cert_path)?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()
            .filter(|chain| !chain.is_empty())
            .ok_or_else(|| Error::Damaged {
                path: cert_path.clone(),
                problem: "not a readable PEM certificate chain".into(),
                fix: refetch.clone(),
            })?;
        check_key_mode(&key_path)?;
        let key_pem = read_to_string(&key_path)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|err| Error::Damaged {
                path: key_path.clone(),
                problem: format!("not a readable PEM private key ({err})"),
                fix: refetch.clone(),
            })?;
        Ok(Leaf {
            cert_pem: pem_encode("CERTIFICATE", &chain[0]),
            chain,
            key,
            key_pem,
            cert_path: Some(cert_path),
            key_path: Some(key_path),
        })
    }
}
