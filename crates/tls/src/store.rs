//! The on-disk state: the CA and the leaves it issued, as PEM files.
//!
//! ```text
//! <dir>/                 0700
//!   ca.pem               the CA certificate (give this to clients)
//!   ca-key.pem           0600, the CA key
//!   certs/<name>.pem     leaf certificates (`localhost+2.pem` like mkcert)
//!   certs/<name>-key.pem 0600
//! ```
//!
//! Every file is written to a temporary file in the same directory and renamed into place, so a
//! crash leaves either the old file or the new one, never half of one. Keys get mode 0600 when
//! the file is created (not `chmod` afterwards, which would leave a window where the key is
//! world-readable).

mod acme;
mod files;

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::ca::{Ca, Leaf, Name};
use crate::inspect::{self, CertInfo};
use crate::{Error, Result};
use files::{
    check_key_mode, create_private_dir, exists, lock_dir, read_to_string, write_atomic, write_new,
};

/// How long `init` waits for another process's `init` of the same store to finish.
const INIT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// does not break next week.
pub const REUSE_MIN_REMAINING: time::Duration = time::Duration::days(30);

/// What [`Store::init`] did.
#[derive(Debug)]
pub enum InitOutcome {
    /// A new CA was generated and saved.
    Created(Ca),
    /// A CA was already there; it was loaded and left untouched.
    AlreadyExists(Ca),
}

impl InitOutcome {
    /// The CA, new or existing.
    pub fn ca(&self) -> &Ca {
        match self {
            Self::Created(ca) | Self::AlreadyExists(ca) => ca,
        }
    }

    /// The CA, new or existing.
    pub fn into_ca(self) -> Ca {
        match self {
            Self::Created(ca) | Self::AlreadyExists(ca) => ca,
        }
    }
}

/// A leaf that [`Store::issue`] or [`Store::leaf_for`] saved, with where and what.
#[derive(Debug, Clone)]
pub struct IssuedLeaf {
    /// The certificate chain and key.
    pub leaf: Leaf,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file (0600).
    pub key_path: PathBuf,
    /// The leaf certificate, decoded.
    pub info: CertInfo,
    /// True when [`Store::leaf_for`] reused a saved leaf instead of issuing one.
    pub reused: bool,
}

/// The state directory. Cheap to create; nothing is read or written until a method needs it.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    owner: String,
}

impl Store {
    /// A store in `dir` (e.g. `$XDG_DATA_HOME/protolab`). The directory is created on the first
    /// write, mode 0700. No I/O happens here.
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            owner: String::new(),
        }
    }

    /// Sets who the CA belongs to, e.g. `alice@laptop`, which goes into a *new* CA's subject so
    /// trust stores tell developers' CAs apart. The library does not look this up itself.
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/ca.pem`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `<dir>/ca-key.pem`.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }

    /// `<dir>/certs`.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// Creates the CA if there is none; never replaces an existing one (returns
    /// [`InitOutcome::AlreadyExists`] after checking it is intact).
    pub fn init(&self) -> Result<InitOutcome> {
        match self.ca() {
            Ok(ca) => return Ok(InitOutcome::AlreadyExists(ca)),
            Err(Error::NotInitialized { .. } | Error::Damaged { .. }) => {}
            Err(err) => return Err(err),
        }
        create_private_dir(&self.dir)?;
        // Concurrent inits (`up` and `proxy` started together on a fresh home) take turns on
        // the store directory's lock, so none sees another's key before its certificate. A
        // wait on the files instead (a young key without a certificate) failed under load:
        // the certificate's fsync outlasted 2 s, then 10 s, during a full test run.
        let _turn = lock_dir(&self.dir, INIT_LOCK_WAIT)?;
        match self.ca() {
            Ok(ca) => return Ok(InitOutcome::AlreadyExists(ca)),
            Err(Error::NotInitialized { .. }) => {}
            Err(err) => return Err(err),
        }
        let ca = Ca::generate(&self.owner, self.ca_cert_path())?;
        // Key first, then certificate: a crash in between leaves a key without a certificate,
        // which `ca()` reports as damaged rather than silently making a second CA. Both are
        // linked into place without overwriting, so even an `init` that ignored the lock
        // (an older protolab) cannot replace them.
        let key_pem = ca.key.serialize_pem();
        write_new(&self.ca_key_path(), key_pem.as_bytes(), 0o600)?;
        write_new(&self.ca_cert_path(), ca.cert_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %self.ca_cert_path().display(), "created protolab CA");
        Ok(InitOutcome::Created(ca))
    }

    /// Loads the CA, creating it first if the store is empty (what `protolab up` uses so a first
    /// run just works). A damaged store is an error, never replaced.
    pub fn ensure_ca(&self) -> Result<Ca> {
        self.init().map(InitOutcome::into_ca)
    }

    /// Loads the CA. [`Error::NotInitialized`] if there is none, [`Error::Damaged`] if the files
    /// are incomplete, unparsable, mismatched or the key is readable by others.
    pub fn ca(&self) -> Result<Ca> {
        let cert_path = self.ca_cert_path();
        let key_path = self.ca_key_path();
        let cert_exists = exists(&cert_path)?;
        let key_exists = exists(&key_path)?;
        let remake = format!(
            "move {} aside and run `protolab certs init` to make a new CA; every certificate it issued must be reissued and the new CA trusted again",
            self.dir.display()
        );
        match (cert_exists, key_exists) {
            (false, false) => return Err(Error::NotInitialized { dir: self.dir.clone() }),
            (true, false) => {
                return Err(Error::Damaged {
                    path: key_path,
                    problem: "the CA private key is missing (the CA certificate is there)".into(),
                    fix: format!("restore ca-key.pem from a backup, or {remake}"),
                })
            }
            (false, true) => {
                return Err(Error::Damaged {
                    path: cert_path,
                    problem: "the CA certificate is missing (its private key is there; an interrupted `certs init`?)".into(),
                    fix: format!("restore ca.pem from a backup, or {remake}"),
                })
            }
            (true, true) => {}
        }
        check_key_mode(&key_path)?;
        let cert_pem = read_to_string(&cert_path)?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|err| Error::Damaged {
                path: cert_path.clone(),
                problem: format!("the CA certificate is not a readable PEM certificate ({err})"),
                fix: remake.clone(),
            })?;
        let (_, x509) = X509Certificate::from_der(&cert_der).map_err(|err| Error::Damaged {
            path: cert_path.clone(),
            problem: format!("the CA certificate does not parse as X.509 ({err})"),
            fix: remake.clone(),
        })?;
        let key_pem = read_to_string(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|err| Error::Damaged {
            path: key_path.clone(),
            problem: format!("the CA private key is not a readable PEM key ({err})"),
            fix: remake.clone(),
        })?;
        if x509.public_key().raw != key.public_key_der().as_slice() {
            return Err(Error::Damaged {
                path: key_path,
                problem: format!(
                    "the CA private key does not belong to the CA certificate {}",
                    cert_path.display()
                ),
                fix: format!("put the matching ca-key.pem back, or {remake}"),
            });
        }
        if !x509.is_ca() {
            return Err(Error::Damaged {
                path: cert_path,
                problem: "ca.pem is not a CA certificate (basicConstraints CA:FALSE)".into(),
                fix: remake,
            });
        }
        Ca::from_parts(cert_der.into_owned(), cert_pem, key, cert_path)
    }

    /// Issues a leaf for `names` with the store's CA (which must exist) and saves it as
    /// `certs/<first name>[+N].pem` and `-key.pem`, replacing a previous leaf of that name.
    pub fn issue(&self, names: &[String]) -> Result<IssuedLeaf> {
        let ca = self.ca()?;
        self.issue_with(&ca, names)
    }

    fn issue_with(&self, ca: &Ca, names: &[String]) -> Result<IssuedLeaf> {
        let mut leaf = ca.issue(names)?;
        let certs = self.certs_dir();
        create_private_dir(&self.dir)?;
        create_private_dir(&certs)?;
        let base = file_stem(names);
        let cert_path = certs.join(format!("{base}.pem"));
        let key_path = certs.join(format!("{base}-key.pem"));
        // Key before certificate: a reader that sees the new certificate also finds its key.
        write_atomic(&key_path, leaf.key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, leaf.cert_pem.as_bytes(), 0o644)?;
        leaf.cert_path = Some(cert_path.clone());
        leaf.key_path = Some(key_path.clone());
        let info = inspect::cert_info(leaf.cert_der())?;
        tracing::info!(path = %cert_path.display(), ?names, "issued leaf certificate");
        Ok(IssuedLeaf {
            leaf,
            cert_path,
            key_path,
            info,
            reused: false,
        })
    }

    /// A leaf covering all `names`: a saved one if it is signed by the current CA, covers every
    /// name and stays valid for more than 30 days, otherwise a new one (saved). Creates the CA
    /// on first use. This is what `protolab up` calls with `["localhost", "127.0.0.1", "::1"]`.
    pub fn leaf_for(&self, names: &[String]) -> Result<Leaf> {
        self.leaf_for_detailed(names).map(|issued| issued.leaf)
    }

    /// [`leaf_for`](Self::leaf_for) with the paths, decoded certificate and whether it was
    /// reused.
    pub fn leaf_for_detailed(&self, names: &[String]) -> Result<IssuedLeaf> {
        if names.is_empty() {
            return Err(Error::NoNames);
        }
        let wanted = names
            .iter()
            .map(|n| Name::parse(n))
            .collect::<Result<Vec<_>>>()?;
        let ca = self.ensure_ca()?;
        // Prefer the file this exact name list would be saved as, then any other saved leaf.
        let preferred = self.certs_dir().join(format!("{}.pem", file_stem(names)));
        let mut candidates = self.saved_leaf_paths()?;
        candidates.sort_by_key(|p| *p != preferred);
        for cert_path in candidates {
            match self.reusable(&ca, &cert_path, &wanted) {
                Ok(Some(issued)) => return Ok(issued),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(path = %cert_path.display(), %err, "skipping unusable saved leaf")
                }
            }
        }
        self.issue_with(&ca, names)
    }

    /// Paths of every saved leaf certificate (`certs/*.pem` except keys), sorted.
    pub fn saved_leaf_paths(&self) -> Result<Vec<PathBuf>> {
        let certs = self.certs_dir();
        let entries = match fs::read_dir(&certs) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io("list", certs, err)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|err| Error::io("list", &certs, err))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".pem") && !name.ends_with("-key.pem") && !name.starts_with('.') {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// Loads a saved leaf and its key from `cert_path` (`<x>.pem` → `<x>-key.pem`); the chain
    /// gets the current CA appended.
    pub fn load_leaf(&self, ca: &Ca, cert_path: &Path) -> Result<Leaf> {
        let key_path = key_path_for(cert_path);
        check_key_mode(&key_path)?;
        let cert_pem = read_to_string(cert_path)?;
        let cert =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|err| Error::Damaged {
                path: cert_path.to_owned(),
                problem: format!("not a readable PEM certificate ({err})"),
                fix: "delete it and its -key.pem; `protolab certs issue` makes a new one".into(),
            })?;
        let key_pem = read_to_string(&key_path)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|err| Error::Damaged {
                path: key_path.clone(),
                problem: format!("not a readable PEM private key ({err})"),
                fix: "delete it and its certificate; `protolab certs issue` makes a new one".into(),
            })?;
        let pair = KeyPair::from_pem(&key_pem).map_err(|err| Error::Damaged {
            path: key_path.clone(),
            problem: format!("not a usable private key ({err})"),
            fix: "delete it and its certificate; `protolab certs issue` makes a new one".into(),
        })?;
        let (_, x509) = X509Certificate::from_der(&cert).map_err(|err| Error::Damaged {
            path: cert_path.to_owned(),
            problem: format!("does not parse as X.509 ({err})"),
            fix: "delete it and its -key.pem; `protolab certs issue` makes a new one".into(),
        })?;
        if x509.public_key().raw != pair.public_key_der().as_slice() {
            return Err(Error::Damaged {
                path: key_path,
                problem: format!("this key does not belong to {}", cert_path.display()),
                fix: "delete both files; `protolab certs issue` makes a new pair".into(),
            });
        }
        Ok(Leaf {
            chain: vec![cert.into_owned(), ca.cert_der.clone()],
            key,
            cert_pem,
            key_pem,
            cert_path: Some(cert_path.to_owned()),
            key_path: Some(key_path),
        })
    }

    /// `Some` if the leaf at `cert_path` can be reused for `wanted`.
    fn reusable(&self, ca: &Ca, cert_path: &Path, wanted: &[Name]) -> Result<Option<IssuedLeaf>> {
        let pem = read_to_string(cert_path)?;
        let Ok(der) = CertificateDer::from_pem_slice(pem.as_bytes()) else {
            return Ok(None);
        };
        let info = inspect::cert_info(&der)?;
        let have: Vec<Name> = info
            .sans
            .iter()
            .filter_map(|s| Name::parse(s).ok())
            .collect();
        if !wanted.iter().all(|w| have.iter().any(|h| w.matches_san(h))) {
            return Ok(None);
        }
        let (_, x509) = X509Certificate::from_der(&der).map_err(|err| Error::BadPem {
            path: cert_path.to_owned(),
            problem: err.to_string(),
        })?;
        let remaining = x509.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
        if remaining <= REUSE_MIN_REMAINING {
            return Ok(None);
        }
        // Signed by the *current* CA, valid now, usable for serverAuth: let webpki decide.
        if !signed_by(ca, &der, &wanted[0]) {
            return Ok(None);
        }
        let leaf = self.load_leaf(ca, cert_path)?;
        let key_path = key_path_for(cert_path);
        Ok(Some(IssuedLeaf {
            leaf,
            cert_path: cert_path.to_owned(),
            key_path,
            info,
            reused: true,
        }))
    }
}

/// Whether `der` verifies as a TLS server certificate for `name` under `ca` alone.
fn signed_by(ca: &Ca, der: &CertificateDer<'static>, name: &Name) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca.cert_der.clone()).is_err() {
        return false;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider).build()
    else {
        return false;
    };
    // A wildcard entry is checked with a concrete name under it.
    let concrete = name.to_string().replace('*', "protolab-reuse-check");
    let Ok(server_name) = ServerName::try_from(concrete) else {
        return false;
    };
    verifier
        .verify_server_cert(der, &[], &server_name, &[], UnixTime::now())
        .is_ok()
}

/// `localhost+2` for `["localhost", "127.0.0.1", "::1"]`, `_wildcard.example.test` for
/// `*.example.test` (mkcert's naming), with anything unsafe in a file name replaced.
pub fn file_stem(names: &[String]) -> String {
    let first = names.first().map(|n| n.trim()).unwrap_or("cert");
    let first = first
        .trim_start_matches('[')
        .trim_end_matches(']')
        .replace('*', "_wildcard");
    let mut stem: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        stem.insert(0, '_');
    }
    if names.len() > 1 {
        stem.push_str(&format!("+{}", names.len() - 1));
    }
    stem
}

/// `<x>.pem` → `<x>-key.pem`.
fn key_path_for(cert_path: &Path) -> PathBuf {
    let stem = cert_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    cert_path.with_file_name(format!("{stem}-key.pem"))
}

#[cfg(test)]
mod tests;
