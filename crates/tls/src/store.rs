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

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::KeyPair;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::ca::{Ca, Leaf, Name};
use crate::inspect::{self, CertInfo};
use crate::{Error, Result};

/// A leaf is reused only while it has more than this much validity left, so a lab started today
/// How long a CA key without its certificate counts as another process's `init` in progress
/// (it writes the certificate right after the key) rather than a damaged store.
const INIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

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
        match self.ca_settled() {
            Ok(ca) => return Ok(InitOutcome::AlreadyExists(ca)),
            Err(Error::NotInitialized { .. }) => {}
            Err(err) => return Err(err),
        }
        create_private_dir(&self.dir)?;
        let ca = Ca::generate(&self.owner, self.ca_cert_path())?;
        // Key first, then certificate: a crash in between leaves a key without a certificate,
        // which `ca()` reports as damaged rather than silently making a second CA. Both are
        // linked into place without overwriting, so two concurrent `init`s cannot both win.
        let key_pem = ca.key.serialize_pem();
        let lost_race = match write_new(&self.ca_key_path(), key_pem.as_bytes(), 0o600) {
            Ok(()) => {
                write_new(&self.ca_cert_path(), ca.cert_pem.as_bytes(), 0o644).map(|()| false)
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(true)
            }
            Err(err) => Err(err),
        }?;
        if lost_race {
            return self.ca_settled().map(InitOutcome::AlreadyExists);
        }
        tracing::info!(path = %self.ca_cert_path().display(), "created protolab CA");
        Ok(InitOutcome::Created(ca))
    }

    /// [`ca`](Self::ca), but a key written moments ago without its certificate is another
    /// process's `init` between its two writes (`up` and `proxy` started together), not
    /// damage: wait for the certificate, a bounded while, before calling it damaged.
    fn ca_settled(&self) -> Result<Ca> {
        let started = std::time::Instant::now();
        loop {
            let result = self.ca();
            let mid_init = matches!(result, Err(Error::Damaged { .. }))
                && !exists(&self.ca_cert_path())?
                && std::fs::metadata(self.ca_key_path())
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < INIT_SETTLE);
            if !mid_init || started.elapsed() >= INIT_SETTLE {
                return result;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
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

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::io("inspect", path, err)),
    }
}

fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|err| Error::io("read", path, err))
}

/// A private key readable by group or others is refused: someone may have copied it.
fn check_key_mode(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Damaged {
                path: path.to_owned(),
                problem: "the private key file is missing".into(),
                fix: "restore it, or delete the matching certificate and issue a new one".into(),
            })
        }
        Err(err) => return Err(Error::io("inspect", path, err)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Damaged {
            path: path.to_owned(),
            problem: format!("the private key is readable by other users (mode {mode:04o}, must be 0600)"),
            fix: format!(
                "run `chmod 600 {}`; if other users may have copied it, also replace it (for the CA: move the state directory aside and run `protolab certs init`)",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Creates `dir` (and parents) with mode 0700 if missing.
fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| Error::io("create directory", dir, err))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a fresh temporary file next to `path` with `mode` set at creation, and
/// flushes it to disk. Returns the temporary path.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", tmp, err));
    }
    Ok(tmp)
}

/// fsyncs the directory so the rename itself survives a crash.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Atomically replaces `path` with `bytes` (temp file + rename).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    if let Err(err) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, err));
    }
    sync_dir(path);
    Ok(())
}

/// Atomically creates `path` with `bytes`; fails with `AlreadyExists` if it is there (a hard link
/// cannot overwrite, unlike rename).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|err| Error::io("create", path, err))?;
    sync_dir(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use x509_parser::extensions::{GeneralName, ParsedExtension};

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("state")).with_owner("tester@box");
        (tmp, store)
    }

    #[test]
    fn ca_profile_and_modes() {
        let (_tmp, store) = temp_store();
        assert!(matches!(store.ca(), Err(Error::NotInitialized { .. })));
        let ca = store.init().unwrap();
        assert!(matches!(ca, InitOutcome::Created(_)));
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.ca_key_path()), 0o600);
        let der = ca.ca().cert_der().clone();
        let (_, x509) = X509Certificate::from_der(&der).unwrap();
        let bc = x509.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        let subject = x509.subject().to_string();
        assert!(
            subject.contains("protolab local CA tester@box"),
            "{subject}"
        );
        assert!(subject.contains("O=protolab development CA"), "{subject}");
        let days =
            (x509.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days();
        assert!((3640..=3650).contains(&days), "{days}");
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_inits_agree_on_one_ca() {
        // `protolab up` and `protolab proxy` started together on a fresh home: the loser of
        // the race used to find the winner's key without its certificate and call it damaged.
        for _ in 0..5 {
            let (_tmp, store) = temp_store();
            let cas: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..6)
                    .map(|_| scope.spawn(|| store.init().map(|o| o.into_ca().cert_der().to_vec())))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap())
                    .collect()
            });
            assert!(cas.windows(2).all(|w| w[0] == w[1]), "one CA for all");
        }
    }

    #[test]
    fn a_key_without_a_certificate_is_still_damage_once_it_is_old() {
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        fs::remove_file(store.ca_cert_path()).unwrap();
        let key = fs::File::options()
            .write(true)
            .open(store.ca_key_path())
            .unwrap();
        key.set_modified(std::time::SystemTime::now() - 2 * INIT_SETTLE)
            .unwrap();
        assert!(matches!(store.init(), Err(Error::Damaged { .. })));
    }

    #[test]
    fn init_twice_keeps_the_ca() {
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        let before = fs::read(store.ca_cert_path()).unwrap();
        let key_before = fs::read(store.ca_key_path()).unwrap();
        assert!(matches!(
            store.init().unwrap(),
            InitOutcome::AlreadyExists(_)
        ));
        assert_eq!(fs::read(store.ca_cert_path()).unwrap(), before);
        assert_eq!(fs::read(store.ca_key_path()).unwrap(), key_before);
        assert_eq!(
            store.ensure_ca().unwrap().cert_pem().as_bytes(),
            before.as_slice()
        );
    }

    #[test]
    fn leaf_profile() {
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        let issued = store
            .issue(&names(&["localhost", "127.0.0.1", "::1", "*.example.test"]))
            .unwrap();
        assert_eq!(issued.cert_path.file_name().unwrap(), "localhost+3.pem");
        assert_eq!(issued.key_path.file_name().unwrap(), "localhost+3-key.pem");
        assert_eq!(mode(&issued.key_path), 0o600);
        assert_eq!(mode(&store.certs_dir()), 0o700);
        assert_eq!(issued.leaf.chain.len(), 2);
        let (_, x509) = X509Certificate::from_der(&issued.leaf.chain[0]).unwrap();
        let mut sans = Vec::new();
        let mut saw_bc = false;
        for ext in x509.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        sans.push(match n {
                            GeneralName::DNSName(d) => (*d).to_owned(),
                            GeneralName::IPAddress(ip) => format!("ip{}", ip.len()),
                            other => panic!("unexpected SAN {other:?}"),
                        });
                    }
                }
                ParsedExtension::BasicConstraints(bc) => {
                    saw_bc = true;
                    assert!(!bc.ca);
                }
                _ => {}
            }
        }
        assert!(saw_bc, "basicConstraints must be present (CA:FALSE)");
        assert_eq!(sans, ["localhost", "ip4", "ip16", "*.example.test"]);
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        assert_eq!(
            x509.subject().to_string(),
            "CN=localhost, O=protolab development certificate"
        );
        let days = (x509.validity().not_after.to_datetime()
            - x509.validity().not_before.to_datetime())
        .whole_days();
        assert!(days <= 825, "{days}");
        assert!(x509.serial.bits() > 100);
        assert_eq!(
            issued.info.sans,
            ["localhost", "127.0.0.1", "::1", "*.example.test"]
        );
        // The saved files load back as the same leaf.
        let ca = store.ca().unwrap();
        let loaded = store.load_leaf(&ca, &issued.cert_path).unwrap();
        assert_eq!(loaded.chain, issued.leaf.chain);
        crate::server_config(&loaded, &[b"http/1.1"]).unwrap();
    }

    #[test]
    fn issue_rejects_bad_names() {
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        assert!(matches!(store.issue(&[]), Err(Error::NoNames)));
        assert!(matches!(
            store.issue(&names(&["ok.test", "bad name"])),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            store.issue(&names(&[""])),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn issue_without_ca_says_init() {
        let (_tmp, store) = temp_store();
        let err = store.issue(&names(&["localhost"])).unwrap_err();
        assert!(err.to_string().contains("protolab certs init"), "{err}");
    }

    #[test]
    fn damaged_states() {
        fn expect_damaged(store: &Store, what: &str) {
            match store.ca() {
                Err(Error::Damaged { fix, problem, .. }) => {
                    assert!(!fix.is_empty() && !problem.is_empty());
                    eprintln!("{what}: {problem} / {fix}");
                }
                other => panic!("{what}: expected Damaged, got {other:?}"),
            }
            // `up` must not paper over it either.
            assert!(
                matches!(store.ensure_ca(), Err(Error::Damaged { .. })),
                "{what}"
            );
        }
        // Key missing.
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        fs::remove_file(store.ca_key_path()).unwrap();
        expect_damaged(&store, "missing key");
        let Err(Error::Damaged { fix, .. }) = store.ca() else {
            unreachable!()
        };
        assert!(
            fix.contains("protolab certs init") && fix.contains("reissued"),
            "{fix}"
        );

        // Cert missing.
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        fs::remove_file(store.ca_cert_path()).unwrap();
        expect_damaged(&store, "missing cert");

        // Truncated cert.
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        let pem = fs::read(store.ca_cert_path()).unwrap();
        fs::write(store.ca_cert_path(), &pem[..pem.len() / 2]).unwrap();
        expect_damaged(&store, "truncated cert");

        // Key readable by others.
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        fs::set_permissions(store.ca_key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        expect_damaged(&store, "key 0644");
        let Err(Error::Damaged { fix, .. }) = store.ca() else {
            unreachable!()
        };
        assert!(fix.contains("chmod 600"), "{fix}");

        // Key from another CA.
        let (_tmp, store) = temp_store();
        store.init().unwrap();
        let (_tmp2, other) = temp_store();
        other.init().unwrap();
        fs::copy(other.ca_key_path(), store.ca_key_path()).unwrap();
        expect_damaged(&store, "mismatched key");
    }

    #[test]
    fn leaf_for_reuses_then_reissues() {
        let (_tmp, store) = temp_store();
        let wanted = names(&["localhost", "127.0.0.1", "::1"]);
        // Creates the CA on first use.
        let first = store.leaf_for_detailed(&wanted).unwrap();
        assert!(!first.reused);
        let second = store.leaf_for_detailed(&wanted).unwrap();
        assert!(second.reused);
        assert_eq!(first.leaf.chain, second.leaf.chain);
        // A subset of the names is covered by the same leaf.
        let subset = store.leaf_for_detailed(&names(&["::1"])).unwrap();
        assert!(subset.reused);
        assert_eq!(subset.leaf.chain, first.leaf.chain);
        // A new name is not.
        let other = store
            .leaf_for_detailed(&names(&["localhost", "app.test"]))
            .unwrap();
        assert!(!other.reused);

        // Nearly expired: replaced.
        let ca = store.ca().unwrap();
        let now = OffsetDateTime::now_utc();
        let old = ca
            .issue_with_validity(
                &wanted,
                now - time::Duration::days(800),
                now + time::Duration::days(10),
            )
            .unwrap();
        fs::write(&first.cert_path, &old.cert_pem).unwrap();
        fs::write(&first.key_path, &old.key_pem).unwrap();
        let third = store.leaf_for_detailed(&wanted).unwrap();
        assert!(!third.reused);
        assert_ne!(third.leaf.chain[0], old.chain[0]);
        assert!(store.leaf_for_detailed(&wanted).unwrap().reused);

        // Signed by a previous CA: replaced.
        fs::rename(store.dir(), store.dir().with_extension("old")).unwrap();
        let mut old_dir_certs = store.dir().with_extension("old");
        old_dir_certs.push("certs");
        create_private_dir(&store.certs_dir()).unwrap();
        store.init().unwrap();
        for entry in fs::read_dir(&old_dir_certs).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), store.certs_dir().join(entry.file_name())).unwrap();
        }
        let fourth = store.leaf_for_detailed(&wanted).unwrap();
        assert!(!fourth.reused);
    }
}
