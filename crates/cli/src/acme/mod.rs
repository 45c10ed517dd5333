//! `protolab certs acme` and `certs renew`: certificates from an ACME CA (Let's Encrypt, or
//! pebble in tests), with protolab answering the challenge itself (or, for dns-01, a hook
//! command publishing the TXT record), stored in the state dir next
//! to the local CA's; and the renewal a running `proxy --acme NAME` does on its own.
//!
//! The protocol is instant-acme's; this module picks the directory, keeps the account, serves
//! the challenge ([`challenge`]), decides when a certificate is due, and says what went wrong
//! in plain words (an ACME CA's problem documents carry a type and a detail: both are shown).

pub mod challenge;
mod issue;
pub mod renew;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use serde::{Deserialize, Serialize};

pub use issue::obtain;

use crate::units::parse_duration;
use crate::Context;

/// Let's Encrypt's production directory (`--directory letsencrypt`).
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`--directory letsencrypt-staging`): untrusted
/// certificates, far higher rate limits; the one to try things with.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// A certificate is renewed once this share of its lifetime has passed (Let's Encrypt's advice:
/// a 90-day certificate at 60 days), leaving a third for retries.
pub const RENEW_AT_FRACTION: f64 = 2.0 / 3.0;

/// `protolab certs acme` arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("challenge").required(true).args(["http_01", "tls_alpn_01", "dns_01_hook"])))]
pub struct AcmeArgs {
    /// The ACME CA: `letsencrypt`, `letsencrypt-staging` (try here first: its rate limits are
    /// far higher) or a directory URL (`https://127.0.0.1:14000/dir` for pebble).
    #[arg(long, value_name = "letsencrypt|letsencrypt-staging|URL")]
    pub directory: String,
    /// A DNS name to certify (repeatable). The first one names the files.
    #[arg(long = "domain", required = true, value_name = "NAME")]
    pub domains: Vec<String>,
    /// Answer http-01 challenges: serve /.well-known/acme-challenge/TOKEN over plain HTTP on
    /// ADDR while the order runs (the CA connects to port 80 of each domain; forward it here).
    #[arg(long = "http-01", value_name = "ADDR")]
    pub http_01: Option<SocketAddr>,
    /// Answer tls-alpn-01 challenges: a TLS listener on ADDR presenting the `acme-tls/1`
    /// validation certificate (the CA connects to port 443 of each domain; forward it here).
    #[arg(long = "tls-alpn-01", value_name = "ADDR")]
    pub tls_alpn_01: Option<SocketAddr>,
    /// Answer dns-01 challenges (the only kind for wildcards) by running CMD with `sh -c` to
    /// publish each TXT record: environment PROTOLAB_ACME_ACTION=set, PROTOLAB_ACME_DOMAIN,
    /// PROTOLAB_ACME_TXT_NAME (`_acme-challenge.DOMAIN`), PROTOLAB_ACME_TXT_VALUE. It must
    /// exit 0 once the record is served; after the order it runs again with ACTION=clear.
    #[arg(long = "dns-01-hook", value_name = "CMD")]
    pub dns_01_hook: Option<String>,
    /// Trust this CA certificate (PEM) for the directory's HTTPS instead of the system roots:
    /// for a test CA such as pebble, whose listener has a certificate of its own making.
    #[arg(long, value_name = "FILE")]
    pub directory_ca: Option<PathBuf>,
    /// A contact for the account, e.g. `mailto:ops@example.com` (repeatable; new accounts only).
    #[arg(long, value_name = "URL")]
    pub contact: Vec<String>,
    /// Give up on the whole order (directory, challenges, certificate) after this long.
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `protolab certs renew` arguments.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The certificates to look at (the first domain of each). Default: every saved one.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Renew even when not due (due: two thirds of the lifetime have passed).
    #[arg(long)]
    pub force: bool,
    /// Give up on each renewal after this long.
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// How a challenge is answered, saved with the certificate so renewals answer it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChallengeSpec {
    /// http-01 on this address.
    Http01 {
        /// Where the responder listens.
        addr: SocketAddr,
    },
    /// tls-alpn-01 on this address.
    TlsAlpn01 {
        /// Where the responder listens.
        addr: SocketAddr,
    },
    /// dns-01, the TXT records published by this command.
    Dns01Hook {
        /// Run with `sh -c`.
        command: String,
    },
}

impl std::fmt::Display for ChallengeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http01 { addr } => write!(f, "http-01 on {addr}"),
            Self::TlsAlpn01 { addr } => write!(f, "tls-alpn-01 on {addr}"),
            Self::Dns01Hook { command } => write!(f, "dns-01 through `{command}`"),
        }
    }
}

/// What it takes to get (and later renew) one certificate: `certs/acme/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The directory URL.
    pub directory: String,
    /// A CA file trusted for the directory's HTTPS, absolute.
    pub directory_ca: Option<PathBuf>,
    /// The names certified, first one naming the files.
    pub domains: Vec<String>,
    /// How challenges are answered.
    pub challenge: ChallengeSpec,
    /// Account contacts.
    #[serde(default)]
    pub contact: Vec<String>,
}

impl Record {
    /// The file name: the first domain, with a wildcard spelled out.
    pub fn name(&self) -> String {
        protolab_tls::file_stem(&self.domains)
    }
}

/// `letsencrypt`, `letsencrypt-staging` or a URL.
pub fn directory_url(value: &str) -> anyhow::Result<String> {
    match value {
        "letsencrypt" => Ok(LETSENCRYPT.to_owned()),
        "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.to_owned()),
        url if url.starts_with("https://") => Ok(url.to_owned()),
        other => Err(crate::usage(format!(
            "--directory {other}: not `letsencrypt`, `letsencrypt-staging` or an https:// URL of an ACME directory"
        ))),
    }
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime.mul_f64(RENEW_AT_FRACTION)
}

/// [`renewal_due`] for a leaf certificate.
pub fn leaf_due(leaf_der: &[u8]) -> anyhow::Result<SystemTime> {
    let (not_before, not_after) =
        protolab_tls::inspect::validity(leaf_der).context("reading the certificate's validity")?;
    Ok(renewal_due(not_before, not_after))
}

/// Runs `protolab certs acme`.
pub async fn run_acme(args: AcmeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let directory = directory_url(&args.directory)?;
    ensure_usage!(
        !args.timeout.is_zero(),
        "--timeout must be greater than zero"
    );
    for domain in &args.domains {
        ensure_usage!(
            matches!(protolab_tls::Name::parse(domain), Ok(protolab_tls::Name::Dns(_))),
            "--domain {domain}: not a DNS name (ACME CAs certify DNS names here; use `protolab certs issue` for IP addresses)"
        );
        ensure_usage!(
            !domain.starts_with("*.") || args.dns_01_hook.is_some(),
            "--domain {domain}: a wildcard can only be proven with dns-01: use --dns-01-hook CMD"
        );
    }
    let directory_ca = match &args.directory_ca {
        Some(path) => Some(
            std::fs::canonicalize(path)
                .map_err(|err| crate::usage(format!("--directory-ca {}: {err}", path.display())))?,
        ),
        None => None,
    };
    let challenge = match (args.http_01, args.tls_alpn_01, args.dns_01_hook) {
        (Some(addr), None, None) => ChallengeSpec::Http01 { addr },
        (None, Some(addr), None) => ChallengeSpec::TlsAlpn01 { addr },
        (None, None, Some(command)) if !command.trim().is_empty() => {
            ChallengeSpec::Dns01Hook { command }
        }
        _ => bail_usage!(
            "pass one of --http-01 ADDR, --tls-alpn-01 ADDR or --dns-01-hook CMD (not empty)"
        ),
    };
    let record = Record {
        directory,
        directory_ca,
        domains: args.domains,
        challenge,
        contact: args.contact,
    };
    let store = ctx.store();
    let leaf = obtain(&store, &record, args.timeout).await?;
    print_obtained(ctx, &record, &leaf, "Obtained")?;
    Ok(ExitCode::SUCCESS)
}

fn print_obtained(
    ctx: &Context,
    record: &Record,
    leaf: &protolab_tls::Leaf,
    verb: &str,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let info = protolab_tls::inspect::cert_info(leaf.cert_der())
        .context("decoding the new certificate")?;
    let due = humantime::format_rfc3339_seconds(leaf_due(leaf.cert_der())?);
    let cert_path = leaf.cert_path.clone().unwrap_or_default();
    let key_path = leaf.key_path.clone().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if ctx.json {
        let line = serde_json::json!({
            "name": record.name(),
            "renewed": verb == "Renewed",
            "directory": record.directory,
            "cert_path": cert_path,
            "key_path": key_path,
            "renew_after": due.to_string(),
            "cert": info,
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{verb} a certificate from {} ({}).\n",
            record.directory, record.challenge
        )?;
        let rows = [
            ("names", info.sans.join(", ")),
            ("issuer", info.issuer.clone()),
            ("certificate", cert_path.display().to_string()),
            ("key", format!("{} (0600)", key_path.display())),
            ("valid until", info.not_after.clone()),
            ("renew after", due.to_string()),
            ("serial", info.serial.clone()),
        ];
        for (k, v) in rows {
            writeln!(out, "  {k:<12} {v}")?;
        }
        writeln!(
            out,
            "\nUse it with `protolab proxy --acme {}` (renews itself), or renew with `protolab certs renew`.",
            record.name()
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `protolab certs renew`: exit 0 when everything asked for is fine, 1 when a renewal
/// failed (each failure said on stderr).
pub async fn run_renew(args: RenewArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    ensure_usage!(
        !args.timeout.is_zero(),
        "--timeout must be greater than zero"
    );
    let store = ctx.store();
    let names = if args.names.is_empty() {
        store
            .acme_names()
            .context("listing the saved ACME certificates")?
    } else {
        args.names.clone()
    };
    if names.is_empty() {
        eprintln!(
            "no ACME certificates saved in {} yet: get one with `protolab certs acme --directory letsencrypt-staging --domain NAME --http-01 ADDR`",
            store.dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0usize;
    for name in names {
        let record: Record = match store
            .read_acme_record(&name)
            .map_err(anyhow::Error::from)
            .and_then(|json| {
                serde_json::from_str(&json).with_context(|| format!("reading the record of {name}"))
            }) {
            Ok(record) => record,
            Err(err) => {
                eprintln!("error: {name}: {err:#}");
                failed += 1;
                continue;
            }
        };
        let due = store
            .load_acme_leaf(&name)
            .map_err(anyhow::Error::from)
            .and_then(|leaf| leaf_due(leaf.cert_der()));
        match due {
            Ok(due) if !args.force && due > SystemTime::now() => {
                let due = humantime::format_rfc3339_seconds(due);
                if ctx.json {
                    let line = serde_json::json!({"name": name, "renewed": false, "renew_after": due.to_string()});
                    println!("{line}");
                } else {
                    println!("{name}: not due (renew after {due})");
                }
                continue;
            }
            Ok(_) => {}
            // A missing or damaged certificate is renewed: that is the repair.
            Err(err) => eprintln!("{name}: {err:#}; getting a new one"),
        }
        match obtain(&store, &record, args.timeout).await {
            Ok(leaf) => print_obtained(ctx, &record, &leaf, "Renewed")?,
            Err(err) => {
                eprintln!("error: renewing {name}: {err:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_two_thirds() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let due = renewal_due(start, start + Duration::from_secs(90));
        assert_eq!(due, start + Duration::from_secs(60));
    }

    #[test]
    fn named_directories() {
        assert_eq!(
            directory_url("letsencrypt").ok().as_deref(),
            Some(LETSENCRYPT)
        );
        assert_eq!(
            directory_url("letsencrypt-staging").ok().as_deref(),
            Some(LETSENCRYPT_STAGING)
        );
        assert!(directory_url("http://plain.example/dir").is_err());
    }
}
