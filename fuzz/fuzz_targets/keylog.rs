//! NSS key log parsing: never a panic, every error names a line that exists, and parsing the
//! text twice (or merging a log into itself) changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::tls::keylog::KeyLog;

fuzz_target!(|data: &[u8]| {
    let (mut log, errors) = KeyLog::parse(data);
    let lines = data.split(|&b| b == b'\n').count();
    for e in &errors {
        assert!(e.line >= 1 && e.line <= lines, "{e}");
    }
    let before = log.len();
    let again = log.clone();
    log.merge(&again);
    assert_eq!(log.len(), before);
});
