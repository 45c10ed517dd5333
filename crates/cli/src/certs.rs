//! `protolab certs`: the local CA, leaf certificates, trust instructions, and diagnosis.
//!
//! Thin layer over `protolab_tls`: this module resolves defaults (who owns the CA, where
//! Chromium's NSS database is, which roots `check` trusts), runs the blocking library calls off
//! the async runtime, and renders the results as aligned text or `--json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use protolab_tls::trust::{self, Installed};
use protolab_tls::{CertInfo, Diagnosis, Error as TlsError, InitOutcome, Problem, Roots};
use serde::Serialize;

use crate::Context;

/// Exit status for "the certificate has a problem" (after the explanation is printed).
const EXIT_PROBLEM: u8 = 1;
/// Exit status for a command line that cannot work (like clap's own usage errors).
const EXIT_USAGE: u8 = 2;

/// `protolab certs` arguments.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// What to do with certificates.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// The `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the local CA (ECDSA P-256, 10 years) in the state directory. Safe to repeat: an
    /// existing CA is never replaced.
    Init,
    /// Issue a certificate for DNS names and IP addresses, signed by the local CA (created if
    /// missing). Prints the certificate and key paths.
    Issue {
        /// Names to certify: `localhost`, `app.example.test`, `*.example.test`, `127.0.0.1`,
        /// `::1`. The first one names the files and the CN.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Show a certificate file, or by default the CA and every certificate issued from it.
    Show {
        /// A PEM file with one or more certificates. Default: the local CA and issued leaves.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print how to make curl, Python, Node, the system and Chromium trust the local CA, or
    /// install it.
    Trust {
        /// Install the CA instead of printing instructions: `system` (Debian's
        /// update-ca-certificates, needs root) or `nss` (Chromium's database, needs certutil).
        #[arg(long, value_enum, value_name = "STORE")]
        install: Option<TrustStore>,
        /// The NSS database for `--install nss`. Default: ~/.pki/nssdb (Chromium's).
        #[arg(long, value_name = "DIR")]
        nssdb: Option<PathBuf>,
    },
    /// Explain why a TLS client rejects a server's certificate: connect to HOST:PORT, or read a
    /// PEM chain FILE. Exit status 0 when the certificate is fine, 1 when it has a problem.
    Check(CheckArgs),
    /// Get a certificate from an ACME CA (Let's Encrypt, or a test CA such as pebble),
    /// answering its http-01 or tls-alpn-01 challenge from protolab itself, and store it in the
    /// state dir (certs/acme/NAME.pem, key 0600) for `proxy --acme NAME`.
    Acme(crate::acme::AcmeArgs),
    /// Renew the ACME certificates that are due (two thirds of their lifetime passed), the same
    /// way they were obtained. Exit status 1 when a renewal failed.
    Renew(crate::acme::RenewArgs),
}

/// Where `certs trust --install` puts the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrustStore {
    /// The operating system store (/usr/local/share/ca-certificates + update-ca-certificates).
    System,
    /// An NSS database (Chromium, and Firefox profiles with --nssdb).
    Nss,
}

/// `protolab certs check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// HOST:PORT to connect to (`localhost:3001`, `[::1]:8443`, `https://host/`), or a PEM file
    /// holding the chain (leaf first).
    #[arg(value_name = "HOST:PORT|FILE")]
    pub target: String,
    /// The name the client would ask for (SNI and hostname check). Default: the HOST part;
    /// required for a FILE.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Trust the CA certificates in this PEM file instead of the defaults (repeatable).
    #[arg(long, value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
    /// Also trust the system roots when --cacert is given (without --cacert they are always
    /// trusted, together with the protolab CA).
    #[arg(long)]
    pub system_roots: bool,
}

/// Runs `protolab certs`.
pub async fn run(args: CertsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let command = match args.command {
        CertsCommand::Acme(args) => return crate::acme::run_acme(args, ctx).await,
        CertsCommand::Renew(args) => return crate::acme::run_renew(args, ctx).await,
        other => other,
    };
    let ctx = ctx.clone();
    // Everything below does blocking file, process or socket I/O: keep it off the runtime.
    tokio::task::spawn_blocking(move || run_blocking(command, &ctx))
        .await
        .context("the certs task panicked")?
}

fn run_blocking(command: CertsCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::Init => init(ctx),
        CertsCommand::Issue { names } => issue(ctx, &names),
        CertsCommand::Show { file } => show(ctx, file.as_deref()),
        CertsCommand::Trust { install, nssdb } => trust_cmd(ctx, install, nssdb),
        CertsCommand::Check(args) => check(ctx, &args),
        CertsCommand::Acme(_) | CertsCommand::Renew(_) => Err(anyhow::anyhow!(
            "the ACME commands run on the async runtime, not here; this is a bug in protolab"
        )),
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("writing to stdout")?;
    Ok(())
}

/// Prints `text` to stdout; a closed pipe surfaces as an error `main` treats as success.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

fn usage_error(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

#[derive(Serialize)]
struct CaJson {
    created: bool,
    cert_path: PathBuf,
    key_path: PathBuf,
    cert: CertInfo,
}

fn init(ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = ctx.store();
    let outcome = store
        .init()
        .with_context(|| format!("setting up the CA in {}", store.dir().display()))?;
    let created = matches!(outcome, InitOutcome::Created(_));
    let ca = outcome.ca();
    let cert =
        protolab_tls::inspect::cert_info(ca.cert_der()).context("decoding the CA certificate")?;
    if ctx.json {
        print_json(&CaJson {
            created,
            cert_path: ca.cert_path().to_owned(),
            key_path: store.ca_key_path(),
            cert,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if created {
        "Created a new local CA"
    } else {
        "The local CA already exists (kept as is)"
    };
    let mut text = format!("{verb}.\n\n");
    text.push_str(&fields(&[
        ("subject", cert.subject.clone()),
        ("certificate", ca.cert_path().display().to_string()),
        (
            "key",
            format!("{} (0600, keep it private)", store.ca_key_path().display()),
        ),
        ("valid until", cert.not_after.clone()),
        ("sha256", cert.sha256_fingerprint),
    ]));
    text.push_str(
        "\nNext: `protolab certs trust` shows how to make browsers and clients trust it.\n",
    );
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct IssueJson<'a> {
    cert_path: &'a Path,
    key_path: &'a Path,
    ca_path: PathBuf,
    ca_created: bool,
    cert: &'a CertInfo,
}

fn issue(ctx: &Context, names: &[String]) -> anyhow::Result<ExitCode> {
    let store = ctx.store();
    let ca_created = matches!(
        store
            .init()
            .with_context(|| format!("loading the CA in {}", store.dir().display()))?,
        InitOutcome::Created(_)
    );
    let issued = match store.issue(names) {
        Err(err @ (TlsError::InvalidName { .. } | TlsError::NoNames)) => {
            return usage_error(&err.to_string())
        }
        other => other.context("issuing the certificate")?,
    };
    if ctx.json {
        print_json(&IssueJson {
            cert_path: &issued.cert_path,
            key_path: &issued.key_path,
            ca_path: store.ca_cert_path(),
            ca_created,
            cert: &issued.info,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    if ca_created {
        text.push_str(&format!(
            "Created a new local CA at {}.\n",
            store.ca_cert_path().display()
        ));
    }
    text.push_str("Issued a certificate signed by the local CA.\n\n");
    text.push_str(&fields(&[
        ("names", issued.info.sans.join(", ")),
        ("certificate", issued.cert_path.display().to_string()),
        ("key", format!("{} (0600)", issued.key_path.display())),
        ("valid until", issued.info.not_after.clone()),
        ("CA", store.ca_cert_path().display().to_string()),
    ]));
    text.push_str(&format!(
        "\nTry: openssl s_server -www -accept 4443 -cert {} -key {}\n     curl --cacert {} https://{}:4443/\n",
        issued.cert_path.display(),
        issued.key_path.display(),
        store.ca_cert_path().display(),
        bracket_ip(names[0].trim()),
    ));
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn bracket_ip(name: &str) -> String {
    if name.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{name}]")
    } else {
        name.to_owned()
    }
}

#[derive(Serialize)]
struct LeafJson {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert: Option<CertInfo>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ShowJson {
    ca: CaJson,
    leaves: Vec<LeafJson>,
}

fn show(ctx: &Context, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    if let Some(file) = file {
        let certs = protolab_tls::read_pem_certs(file)
            .with_context(|| format!("reading {}", file.display()))?;
        let infos = certs
            .iter()
            .map(|der| protolab_tls::inspect::cert_info(der))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("decoding {}", file.display()))?;
        if ctx.json {
            print_json(&infos)?;
        } else {
            let mut text = String::new();
            for (i, info) in infos.iter().enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                text.push_str(&format!("certificate {i} in {}\n", file.display()));
                text.push_str(&cert_fields(info));
            }
            out(&text)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = ctx.store();
    let ca = store
        .ca()
        .with_context(|| format!("loading the CA in {}", store.dir().display()))?;
    let ca_info =
        protolab_tls::inspect::cert_info(ca.cert_der()).context("decoding the CA certificate")?;
    let mut leaves = Vec::new();
    for cert_path in store
        .saved_leaf_paths()
        .context("listing issued certificates")?
    {
        let stem = cert_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let key_path = cert_path.with_file_name(format!("{stem}-key.pem"));
        let decoded = protolab_tls::read_pem_certs(&cert_path)
            .and_then(|certs| protolab_tls::inspect::cert_info(&certs[0]));
        let (cert, error) = match decoded {
            Ok(info) => (Some(info), None),
            Err(err) => (None, Some(err.to_string())),
        };
        leaves.push(LeafJson {
            cert_path,
            key_path,
            cert,
            error,
        });
    }
    if ctx.json {
        print_json(&ShowJson {
            ca: CaJson {
                created: false,
                cert_path: ca.cert_path().to_owned(),
                key_path: store.ca_key_path(),
                cert: ca_info,
            },
            leaves,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!("local CA {}\n", ca.cert_path().display());
    text.push_str(&cert_fields(&ca_info));
    text.push_str(&format!(
        "\nissued certificates in {}:\n",
        store.certs_dir().display()
    ));
    if leaves.is_empty() {
        text.push_str("  (none yet: `protolab certs issue NAME...`)\n");
    }
    let rows: Vec<(String, String)> = leaves
        .iter()
        .map(|leaf| {
            let name = leaf
                .cert_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let detail = match (&leaf.cert, &leaf.error) {
                (Some(info), _) => format!("{}  until {}", info.sans.join(", "), info.not_after),
                (None, Some(err)) => format!("unreadable: {err}"),
                (None, None) => String::new(),
            };
            (name, detail)
        })
        .collect();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, detail) in rows {
        text.push_str(&format!("  {name:<width$}  {detail}\n"));
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Aligned `label  value` lines, two-space indent.
fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(label, value)| format!("  {label:<width$}  {value}\n"))
        .collect()
}

fn cert_fields(info: &CertInfo) -> String {
    let none = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    fields(&[
        ("subject", info.subject.clone()),
        ("issuer", info.issuer.clone()),
        ("names", none(&info.sans)),
        ("valid from", info.not_before.clone()),
        ("valid until", info.not_after.clone()),
        ("key", info.public_key.clone()),
        (
            "CA",
            if info.is_ca {
                "yes".to_owned()
            } else {
                "no".to_owned()
            },
        ),
        (
            "self-signed",
            if info.self_signed {
                "yes".to_owned()
            } else {
                "no".to_owned()
            },
        ),
        ("key usage", none(&info.key_usage)),
        ("ext key usage", none(&info.ext_key_usage)),
        ("serial", info.serial.clone()),
        ("sha256", info.sha256_fingerprint.clone()),
    ])
}

#[derive(Serialize)]
struct TrustJson<'a> {
    ca_path: &'a Path,
    recipes: Vec<trust::Recipe>,
}

#[derive(Serialize)]
struct InstallJson<'a> {
    store: &'a str,
    target: String,
    outcome: Installed,
}

fn trust_cmd(
    ctx: &Context,
    install: Option<TrustStore>,
    nssdb: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let store = ctx.store();
    let ca = store
        .ca()
        .with_context(|| format!("loading the CA in {}", store.dir().display()))?;
    let ca_path = ca.cert_path();
    let Some(target) = install else {
        if nssdb.is_some() {
            return usage_error("--nssdb only makes sense with --install nss");
        }
        let recipes = trust::recipes(ca_path);
        if ctx.json {
            print_json(&TrustJson { ca_path, recipes })?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut text = format!("To trust the protolab CA ({}):\n", ca_path.display());
        for recipe in recipes {
            text.push_str(&format!("\n{}:\n", recipe.client));
            for line in recipe.how.lines() {
                text.push_str(&format!("  {line}\n"));
            }
        }
        out(&text)?;
        return Ok(ExitCode::SUCCESS);
    };
    let (name, where_, outcome) = match target {
        TrustStore::System => {
            if nssdb.is_some() {
                return usage_error("--nssdb only makes sense with --install nss");
            }
            let outcome =
                trust::install_system(ca_path).context("installing the CA in the system store")?;
            ("system", trust::DEBIAN_LOCAL_CA_DIR.to_owned(), outcome)
        }
        TrustStore::Nss => {
            let db = match nssdb {
                Some(db) => db,
                None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                    Some(home) => trust::default_nssdb(Path::new(&home)),
                    None => return usage_error("HOME is not set: pass --nssdb DIR"),
                },
            };
            let outcome = trust::install_nss(ca_path, &db).with_context(|| {
                format!("installing the CA in the NSS database {}", db.display())
            })?;
            ("nss", db.display().to_string(), outcome)
        }
    };
    if ctx.json {
        print_json(&InstallJson {
            store: name,
            target: where_,
            outcome,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let said = match outcome {
        Installed::Added => "Installed the protolab CA in",
        Installed::AlreadyPresent => "The protolab CA was already installed in",
        Installed::Replaced => "Replaced an older protolab CA with the current one in",
    };
    let mut text = format!("{said} {where_}.\n");
    if target == TrustStore::Nss {
        text.push_str("Restart Chromium so it rereads the database.\n");
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// A parsed `HOST:PORT` target.
#[derive(Debug, PartialEq, Eq)]
struct Remote {
    /// What to dial, e.g. `localhost:3001` or `[::1]:8443`.
    addr: String,
    /// The host alone, brackets removed: the default name to check.
    host: String,
}

/// Accepts `host:port`, `[v6]:port` and `https://host[:port]/...` (port 443 by default).
fn parse_remote(target: &str) -> Option<Remote> {
    let (rest, default_port) = match target.split_once("://") {
        Some(("https" | "wss", rest)) => (rest, Some(443)),
        Some(_) => return None,
        None => (target, None),
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok()?,
            None if after.is_empty() => default_port?,
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                (host.to_owned(), port.parse::<u16>().ok()?)
            }
            Some(_) => return None,
            None => (hostport.to_owned(), default_port?),
        }
    };
    if host.is_empty() {
        return None;
    }
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(Remote { addr, host })
}

fn check_roots(ctx: &Context, args: &CheckArgs) -> anyhow::Result<Roots> {
    let mut roots = Roots::new();
    if args.cacert.is_empty() {
        match ctx.store().ca() {
            Ok(ca) => roots = roots.with_ca(&ca),
            Err(TlsError::NotInitialized { .. }) => {}
            Err(err) => eprintln!("warning: not trusting the protolab CA: {err}"),
        }
    }
    for file in &args.cacert {
        roots = roots
            .with_ca_file(file)
            .with_context(|| format!("reading --cacert {}", file.display()))?;
    }
    if args.cacert.is_empty() || args.system_roots {
        roots = match roots.clone().with_system() {
            Ok(with) => with,
            Err(err) => {
                eprintln!("warning: {err}");
                roots
            }
        };
    }
    Ok(roots)
}

fn check(ctx: &Context, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let file = Path::new(&args.target);
    let roots = check_roots(ctx, args)?;
    let (diagnosis, what) = if file.is_file() {
        let Some(name) = &args.name else {
            return usage_error(&format!(
                "checking the file {} needs --name NAME: the host name a client would connect to",
                file.display()
            ));
        };
        let diagnosis = protolab_tls::check_pem_file(file, name, &roots)
            .with_context(|| format!("checking {}", file.display()))?;
        (diagnosis, format!("{} for {name}", file.display()))
    } else {
        let Some(remote) = parse_remote(&args.target) else {
            return usage_error(&format!(
                "`{}` is neither a file nor HOST:PORT (e.g. `localhost:3001`, `[::1]:8443`, `https://example.test/`)",
                args.target
            ));
        };
        let name = args.name.clone().unwrap_or_else(|| remote.host.clone());
        let diagnosis = protolab_tls::check_remote(&remote.addr, &name, &roots)
            .with_context(|| format!("checking the certificate of {}", remote.addr))?;
        (diagnosis, format!("{} as {name}", remote.addr))
    };
    render_diagnosis(ctx, &diagnosis, &what)?;
    Ok(if diagnosis.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}

fn render_diagnosis(ctx: &Context, d: &Diagnosis, what: &str) -> anyhow::Result<()> {
    if ctx.json {
        return print_json(d);
    }
    let verdict = if d.problems.is_empty() {
        "OK".to_owned()
    } else {
        let titles: Vec<&str> = d.problems.iter().map(Problem::title).collect();
        let label = if titles.len() == 1 {
            "PROBLEM"
        } else {
            "PROBLEMS"
        };
        format!("{label}: {}", titles.join("; "))
    };
    let mut rows = vec![("checked", what.to_owned()), ("result", verdict)];
    if let Some(by) = &d.verified_by {
        rows.push(("verified by", by.clone()));
    }
    rows.push(("trusted", d.trusted.clone()));
    if let Some(conn) = &d.connection {
        rows.push(("connection", conn.clone()));
    }
    let mut text = fields(&rows);
    text.push('\n');
    text.push_str(&wrap(&d.explanation, 96, "  "));
    for (i, info) in d.chain.iter().enumerate() {
        let role = if i == 0 {
            "leaf (the server's own)"
        } else {
            "chain"
        };
        text.push_str(&format!("\ncertificate {i}: {role}\n"));
        text.push_str(&cert_fields(info));
    }
    out(&text)
}

/// Greedy word wrap, each line prefixed with `indent`.
pub(crate) fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut result = String::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                result.push_str(indent);
                result.push_str(&line);
                result.push('\n');
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        result.push_str(indent);
        result.push_str(&line);
        result.push('\n');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_targets() {
        let r = |s: &str| parse_remote(s).map(|r| (r.addr, r.host));
        assert_eq!(
            r("localhost:3001"),
            Some(("localhost:3001".into(), "localhost".into()))
        );
        assert_eq!(r("[::1]:8443"), Some(("[::1]:8443".into(), "::1".into())));
        assert_eq!(
            r("https://example.test/x"),
            Some(("example.test:443".into(), "example.test".into()))
        );
        assert_eq!(
            r("https://[::1]/"),
            Some(("[::1]:443".into(), "::1".into()))
        );
        assert_eq!(r("localhost"), None);
        assert_eq!(r("http://localhost:80"), None);
        assert_eq!(r("::1:443"), None);
        assert_eq!(r("host:notaport"), None);
    }

    #[test]
    fn wraps() {
        assert_eq!(wrap("aaa bbb ccc", 7, "> "), "> aaa bbb\n> ccc\n");
    }
}
