//! Making clients trust the protolab CA: instructions per client, and installers for the Debian
//! system store and NSS databases (Chromium, Firefox profiles).
//!
//! Installers run the distribution's own tools (`update-ca-certificates`, `certutil`) rather
//! than editing stores by hand, so the result is exactly what those tools would produce, and
//! they are idempotent: installing twice changes nothing the second time.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde::Serialize;

use crate::{Error, Result};

/// The nickname the CA gets in NSS databases.
pub const NSS_NICKNAME: &str = "protolab CA";

/// Where Debian's `update-ca-certificates` picks up local CAs.
pub const DEBIAN_LOCAL_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// The file name the CA gets in [`DEBIAN_LOCAL_CA_DIR`] (must end in `.crt`).
pub const DEBIAN_FILE_NAME: &str = "protolab-ca.crt";

/// How to make one client trust the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    /// The client, e.g. `curl`.
    pub client: &'static str,
    /// Commands or code, one step per line.
    pub how: String,
}

/// Recipes for curl, Python, Node, the Debian system store and Chromium's NSS database, for the
/// CA certificate at `ca_path`.
pub fn recipes(ca_path: &Path) -> Vec<Recipe> {
    let ca = ca_path.display();
    vec![
        Recipe { client: "curl", how: format!("curl --cacert {ca} https://localhost:3001/") },
        Recipe {
            client: "Python",
            how: format!(
                "ssl.create_default_context(cafile=\"{ca}\")\nrequests.get(url, verify=\"{ca}\")   # or REQUESTS_CA_BUNDLE={ca}"
            ),
        },
        Recipe { client: "Node", how: format!("NODE_EXTRA_CA_CERTS={ca} node app.js") },
        Recipe {
            client: "Debian/Ubuntu system store",
            how: format!(
                "sudo cp {ca} {DEBIAN_LOCAL_CA_DIR}/{DEBIAN_FILE_NAME}\nsudo update-ca-certificates\n# or: sudo protolab certs trust --install system"
            ),
        },
        // certutil creates neither the directory nor the database, and `-N` on an existing
        // database asks for its password forever when there is no terminal: create both only
        // when `cert9.db` is missing, as `install_nss` does.
        Recipe {
            client: "Chromium (NSS)",
            how: format!(
                "mkdir -p $HOME/.pki/nssdb\n\
                 [ -f $HOME/.pki/nssdb/cert9.db ] || certutil -d sql:$HOME/.pki/nssdb -N --empty-password\n\
                 certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n \"{NSS_NICKNAME}\" -i {ca}\n\
                 # or: protolab certs trust --install nss   (restart the browser afterwards)"
            ),
        },
    ]
}

/// What an installer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Installed {
    /// The CA was added.
    Added,
    /// The same CA was already there; nothing changed.
    AlreadyPresent,
    /// An older certificate under the same name was replaced.
    Replaced,
}

/// Copies the CA into [`DEBIAN_LOCAL_CA_DIR`] and runs `update-ca-certificates`. Needs root.
pub fn install_system(ca_path: &Path) -> Result<Installed> {
    install_system_in(ca_path, Path::new(DEBIAN_LOCAL_CA_DIR), true)
}

/// [`install_system`] into another directory; `update` runs `update-ca-certificates`
/// afterwards (only meaningful for the real directory).
pub fn install_system_in(ca_path: &Path, dir: &Path, update: bool) -> Result<Installed> {
    let pem = fs::read(ca_path).map_err(|err| Error::io("read", ca_path, err))?;
    // Validate before touching the system store.
    CertificateDer::from_pem_slice(&pem).map_err(|err| Error::BadPem {
        path: ca_path.to_owned(),
        problem: format!("not a PEM certificate ({err})"),
    })?;
    let dest = dir.join(DEBIAN_FILE_NAME);
    let outcome = match fs::read(&dest) {
        Ok(existing) if existing == pem => Installed::AlreadyPresent,
        Ok(_) => Installed::Replaced,
        Err(err) if err.kind() == ErrorKind::NotFound => Installed::Added,
        Err(err) => return Err(Error::io("read", dest, err)),
    };
    if outcome != Installed::AlreadyPresent {
        if let Err(err) = fs::create_dir_all(dir).and_then(|()| fs::write(&dest, &pem)) {
            return Err(if err.kind() == ErrorKind::PermissionDenied {
                Error::NeedRoot { path: dest }
            } else {
                Error::io("write", dest, err)
            });
        }
    }
    if update {
        // Run even when the file was already there: a previous run may have died before this.
        run(
            Command::new("update-ca-certificates"),
            "update-ca-certificates",
            "ca-certificates",
        )?;
    }
    Ok(outcome)
}

/// Adds the CA to the NSS database in `nssdb_dir` (Chromium: `~/.pki/nssdb`) as a trusted TLS
/// issuer (`-t C,,`), creating the database if needed. Needs `certutil` (libnss3-tools).
pub fn install_nss(ca_path: &Path, nssdb_dir: &Path) -> Result<Installed> {
    let pem = fs::read(ca_path).map_err(|err| Error::io("read", ca_path, err))?;
    let ours = CertificateDer::from_pem_slice(&pem).map_err(|err| Error::BadPem {
        path: ca_path.to_owned(),
        problem: format!("not a PEM certificate ({err})"),
    })?;
    let db = format!("sql:{}", nssdb_dir.display());
    if !nssdb_dir.join("cert9.db").exists() {
        fs::create_dir_all(nssdb_dir)
            .map_err(|err| Error::io("create directory", nssdb_dir, err))?;
        let mut create = Command::new("certutil");
        create.args(["-N", "-d", &db, "--empty-password"]);
        run(create, "certutil", "libnss3-tools")?;
    }
    let mut list = Command::new("certutil");
    list.args(["-L", "-d", &db, "-n", NSS_NICKNAME, "-a"]);
    let existing = output(list, "certutil", "libnss3-tools")?;
    let mut outcome = Installed::Added;
    if existing.status.success() {
        let present: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&existing.stdout)
                .filter_map(std::result::Result::ok)
                .collect();
        if present.contains(&ours) {
            return Ok(Installed::AlreadyPresent);
        }
        // Another certificate holds our nickname (an older protolab CA): replace it, removing
        // every copy so the nickname is unambiguous.
        for _ in 0..present.len().max(1) {
            let mut delete = Command::new("certutil");
            delete.args(["-D", "-d", &db, "-n", NSS_NICKNAME]);
            run(delete, "certutil", "libnss3-tools")?;
        }
        outcome = Installed::Replaced;
    }
    let mut add = Command::new("certutil");
    add.args(["-A", "-d", &db, "-t", "C,,", "-n", NSS_NICKNAME, "-i"])
        .arg(ca_path);
    run(add, "certutil", "libnss3-tools")?;
    Ok(outcome)
}

/// Chromium's default NSS database under a home directory.
pub fn default_nssdb(home: &Path) -> PathBuf {
    home.join(".pki/nssdb")
}

fn output(mut cmd: Command, tool: &'static str, package: &'static str) -> Result<Output> {
    cmd.output().map_err(|err| {
        if err.kind() == ErrorKind::NotFound {
            Error::ToolMissing { tool, package }
        } else {
            Error::ToolFailed {
                command: format!("{cmd:?}"),
                status: "could not start".into(),
                output: err.to_string(),
            }
        }
    })
}

fn run(cmd: Command, tool: &'static str, package: &'static str) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = output(cmd, tool, package)?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(Error::ToolFailed {
        command: shown,
        status: out.status.to_string(),
        output: text,
    })
}
