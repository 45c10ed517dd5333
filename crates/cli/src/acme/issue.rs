//! One ACME order from start to stored certificate: account (created once per directory and
//! kept in the state dir, 0600), order, challenges answered by [`Responder`], finalization,
//! and the chain saved with its key and renewal record.

use std::time::Duration;

use anyhow::Context as _;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use protolab_tls::{Leaf, Store};

use super::challenge::Responder;
use super::{ChallengeSpec, Record};

/// The ACME problem type for an account the CA does not know (a test CA restarted, an account
/// deactivated): a new one is made.
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// Runs a whole order for `record` and stores the result; fails after `timeout` at the latest,
/// with what went wrong in plain words.
pub async fn obtain(store: &Store, record: &Record, timeout: Duration) -> anyhow::Result<Leaf> {
    match tokio::time::timeout(timeout, obtain_unbounded(store, record, timeout)).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!(
            "the ACME CA at {} did not complete the order within {} (no answer, or validation still pending): check the URL, that the CA is up and reachable from here, or give it longer with --timeout",
            record.directory,
            humantime::format_duration(timeout)
        ),
    }
}

async fn obtain_unbounded(
    store: &Store,
    record: &Record,
    timeout: Duration,
) -> anyhow::Result<Leaf> {
    let account = load_account(store, record, false).await?;
    let identifiers: Vec<Identifier> = record
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
        Err(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST) =>
        {
            load_account(store, record, true)
                .await?
                .new_order(&NewOrder::new(&identifiers))
                .await
        }
        other => other,
    }
    .map_err(|err| explain(err, "placing the order"))?;

    let responder = Responder::start(&record.challenge).await?;
    let validated = validate(&mut order, record, &responder, timeout).await;
    // dns-01 records are cleared whatever happened; listeners stop.
    responder.finish().await;
    let retries = validated?;

    let key_pem = order
        .finalize()
        .await
        .map_err(|err| explain(err, "finalizing the order"))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(|err| explain(err, "downloading the certificate"))?;
    let record_json = serde_json::to_string_pretty(record).context("encoding the record")?;
    store
        .save_acme_cert(&record.name(), &chain_pem, &key_pem, &record_json)
        .context("saving the certificate from the ACME CA")
}

/// Answers every pending authorization and waits until the order is ready; the retry policy
/// the rest of the order uses.
async fn validate(
    order: &mut instant_acme::Order,
    record: &Record,
    responder: &Responder,
    timeout: Duration,
) -> anyhow::Result<RetryPolicy> {
    let kind = match record.challenge {
        ChallengeSpec::Http01 { .. } => ChallengeType::Http01,
        ChallengeSpec::TlsAlpn01 { .. } => ChallengeType::TlsAlpn01,
        ChallengeSpec::Dns01Hook { .. } => ChallengeType::Dns01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|err| explain(err, "fetching the authorizations"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Authorized recently by this account: nothing to prove again.
            AuthorizationStatus::Valid => continue,
            status => anyhow::bail!(
                "the ACME CA reports the authorization for {} as {status:?}: place a new order (run the command again)",
                authz.identifier()
            ),
        }
        let domain = authz.identifier().to_string();
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            anyhow::bail!(
                "the ACME CA offers no {} challenge for {domain}: use the other of --http-01 / --tls-alpn-01",
                challenge_name(&kind)
            );
        };
        let key_authorization = challenge.key_authorization();
        responder
            .answer(&domain, &challenge.token, &key_authorization)
            .await?;
        challenge
            .set_ready()
            .await
            .map_err(|err| explain(err, &format!("starting the challenge for {domain}")))?;
    }

    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(timeout);
    // The order's own problem (pebble sets one when a challenge fails) or an invalid status
    // both mean "not validated"; the challenges say why.
    let failure = match order.poll_ready(&retries).await {
        Ok(OrderStatus::Ready) => None,
        Ok(status) => Some(format!("the order is {status:?}")),
        Err(instant_acme::Error::Api(problem)) => Some(problem_words(&problem)),
        Err(err) => return Err(explain(err, "waiting for the validation")),
    };
    if let Some(order_problem) = failure {
        let mut why = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            let Ok(state) = authz.refresh().await else {
                continue;
            };
            let domain = state.identifier().to_string();
            for c in &state.challenges {
                if let Some(problem) = &c.error {
                    why.push(format!(
                        "{domain} ({}): {}",
                        challenge_name(&c.r#type),
                        problem_words(problem)
                    ));
                }
            }
        }
        if why.is_empty() {
            why.push(order_problem);
        }
        let hint = match record.challenge {
            ChallengeSpec::Http01 { .. } => {
                "the CA reaches http://DOMAIN/.well-known/acme-challenge/ on port 80, forwarded to"
            }
            ChallengeSpec::TlsAlpn01 { .. } => "the CA reaches DOMAIN on port 443, forwarded to",
            ChallengeSpec::Dns01Hook { .. } => {
                "the CA's resolvers see the _acme-challenge TXT record published by"
            }
        };
        anyhow::bail!(
            "the ACME CA could not validate the order: {}. Check that {hint} {}",
            why.join("; "),
            responder.describe()
        );
    }
    Ok(retries)
}

fn challenge_name(kind: &ChallengeType) -> &str {
    match kind {
        ChallengeType::Http01 => "http-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        ChallengeType::Dns01 => "dns-01",
        ChallengeType::Unknown(name) => name,
        _ => "another challenge",
    }
}

fn builder(record: &Record) -> anyhow::Result<AccountBuilder> {
    // hyper-rustls builds its client config with the process-wide provider: make it ring, the
    // one protolab uses everywhere (a second call finds it installed, which is fine).
    let _ = protolab_tls::rustls::crypto::ring::default_provider().install_default();
    match &record.directory_ca {
        Some(path) => Account::builder_with_root(path).map_err(|err| {
            anyhow::anyhow!(
                "--directory-ca {}: not a usable PEM CA certificate ({err})",
                path.display()
            )
        }),
        None => Account::builder().map_err(|err| explain(err, "loading the system roots")),
    }
}

/// The account for the record's directory: the saved one, or a new one (saved 0600) when there
/// is none or `fresh` is asked for.
async fn load_account(store: &Store, record: &Record, fresh: bool) -> anyhow::Result<Account> {
    let saved = if fresh {
        None
    } else {
        store
            .read_acme_account(&record.directory)
            .context("reading the ACME account")?
    };
    if let Some(json) = saved {
        let credentials: AccountCredentials = serde_json::from_str(&json).with_context(|| {
            format!(
                "{}: not an ACME account file; move it aside to make a new account",
                store.acme_account_path(&record.directory).display()
            )
        })?;
        return builder(record)?
            .from_credentials(credentials)
            .await
            .map_err(|err| explain(err, &format!("reading the directory {}", record.directory)));
    }
    let contact: Vec<&str> = record.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(record)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            record.directory.clone(),
            None,
        )
        .await
        .map_err(|err| {
            explain(
                err,
                &format!("creating an account at the directory {}", record.directory),
            )
        })?;
    let json = serde_json::to_string(&credentials).context("encoding the ACME account")?;
    store
        .save_acme_account(&record.directory, &json)
        .context("saving the ACME account")?;
    Ok(account)
}

/// An ACME problem document in words: its detail, its type, and what to do for the usual ones.
fn problem_words(problem: &instant_acme::Problem) -> String {
    let kind = problem
        .r#type
        .as_deref()
        .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"))
        .unwrap_or("no type");
    let detail = problem.detail.as_deref().unwrap_or("no detail given");
    let mut words = format!("{detail} [{kind}]");
    let advice = match kind {
        "rateLimited" => Some(
            "a rate limit of the CA was hit: wait before trying again, and test against --directory letsencrypt-staging",
        ),
        "rejectedIdentifier" => Some("the CA will not certify this name"),
        "connection" | "dns" => Some("the CA could not reach the challenge responder"),
        "unauthorized" | "incorrectResponse" => Some("the responder answered, but not what the CA expected"),
        "caa" => Some("a CAA record of the domain forbids this CA"),
        _ => None,
    };
    for sub in &problem.subproblems {
        let target = sub
            .identifier
            .as_ref()
            .map(|i| i.authorized(false).to_string())
            .unwrap_or_default();
        words.push_str(&format!(
            "; {target}: {}",
            sub.detail.as_deref().unwrap_or("no detail given")
        ));
    }
    if let Some(advice) = advice {
        words.push_str(&format!(" ({advice})"));
    }
    words
}

/// instant-acme's error while `doing` something, in plain words.
fn explain(err: instant_acme::Error, doing: &str) -> anyhow::Error {
    match err {
        instant_acme::Error::Api(problem) => {
            anyhow::anyhow!("the ACME CA refused {doing}: {}", problem_words(&problem))
        }
        instant_acme::Error::Json(source) => anyhow::anyhow!(
            "{doing}: the answer is not what an ACME CA sends ({source}); check that --directory is the URL of an ACME directory"
        ),
        other => {
            let mut chain = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(cause) = source {
                chain.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            anyhow::anyhow!(
                "{doing}: {chain}. Check --directory (and --directory-ca for a CA with a certificate of its own making)"
            )
        }
    }
}
