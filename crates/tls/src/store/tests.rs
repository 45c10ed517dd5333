//! The store against its promises: the CA's and leaves' profiles, file modes, concurrent
//! inits, reuse and reissue, and every damaged state named with its fix.

use std::os::unix::fs::PermissionsExt as _;

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
    let days = (x509.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days();
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
fn a_key_without_a_certificate_is_damage_not_a_reason_for_a_second_ca() {
    let (_tmp, store) = temp_store();
    store.init().unwrap();
    fs::remove_file(store.ca_cert_path()).unwrap();
    assert!(matches!(store.init(), Err(Error::Damaged { .. })));
    assert!(!store.ca_cert_path().exists(), "no second CA was made");
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
    let days = (x509.validity().not_after.to_datetime() - x509.validity().not_before.to_datetime())
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

#[test]
fn acme_files_are_private_and_load_back_whole() {
    let (_tmp, store) = temp_store();
    store.init().unwrap();
    // A chain of two from the local CA stands in for an ACME CA's answer.
    let issued = store.issue(&names(&["app.example.test"])).unwrap();
    let leaf = store
        .save_acme_cert(
            "app.example.test",
            &issued.leaf.chain_pem(),
            &issued.leaf.key_pem,
            "{}",
        )
        .unwrap();
    assert_eq!(leaf.chain, issued.leaf.chain);
    assert_eq!(mode(&store.acme_key_path("app.example.test")), 0o600);
    assert_eq!(store.acme_names().unwrap(), ["app.example.test"]);

    let url = "https://acme.example.test/directory";
    assert!(store.read_acme_account(url).unwrap().is_none());
    let path = store.save_acme_account(url, r#"{"id":"x"}"#).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_ne!(
        path,
        store.acme_account_path("https://other.example.test/directory")
    );
    // An account file others can read is refused, like any key.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        store.read_acme_account(url),
        Err(Error::Damaged { .. })
    ));
}

#[test]
fn a_replaced_slot_serves_the_new_certificate() {
    let (_tmp, store) = temp_store();
    store.init().unwrap();
    let first = store.issue(&names(&["a.test"])).unwrap().leaf;
    let second = store.issue(&names(&["b.test"])).unwrap().leaf;
    let slot = crate::CertSlot::new(&first).unwrap();
    assert_eq!(slot.current().cert[0], first.chain[0]);
    slot.replace(&second).unwrap();
    assert_eq!(slot.current().cert[0], second.chain[0]);
}
