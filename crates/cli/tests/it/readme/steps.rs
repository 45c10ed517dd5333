//! The README commands that are not simply run to the end: servers started and stopped,
//! commands run only as root or with expected output, and commands not run, each with why.

/// A README command that is not simply run to the end, matched by its text (without its
/// trailing comment, spaces collapsed).
pub(super) struct Step {
    pub(super) command: &'static str,
    pub(super) how: How,
}

pub(super) enum How {
    /// Not run, for this reason.
    NotRun(&'static str),
    /// Runs to the end (only as root when `root`); must succeed and print each of `expect`.
    Run {
        root: bool,
        expect: &'static [&'static str],
    },
    /// A server or capture: started in the background and waited for until it prints
    /// `ready`; stopped with SIGINT (and must then exit 0) just before the next README command
    /// `stop_before` starts, or at the README's end. When `readme_output`, every output line
    /// the README shows under it must be among its lines.
    Serve {
        root: bool,
        ready: &'static str,
        stop_before: Option<&'static str>,
        readme_output: bool,
    },
}

pub(super) const STEPS: &[Step] = &[
    Step {
        command: "protolab certs acme --directory letsencrypt-staging --domain app.example.com --http-01 0.0.0.0:80",
        how: How::NotRun(
            "Let's Encrypt must reach app.example.com from the internet; tests/it/acme.rs runs \
             the same order against pebble on loopback",
        ),
    },
    Step {
        command: "protolab certs acme --directory letsencrypt --domain app.example.com --tls-alpn-01 0.0.0.0:443",
        how: How::NotRun(
            "Let's Encrypt must reach app.example.com from the internet; tests/it/acme.rs runs \
             tls-alpn-01 against pebble on loopback",
        ),
    },
    Step {
        command: "protolab certs acme --directory letsencrypt --domain '*.example.com' --dns-01-hook ./publish-txt.sh",
        how: How::NotRun(
            "needs a DNS provider's API; tests/it/acme.rs runs dns-01 through a hook against \
             pebble and pebble-challtestsrv on loopback",
        ),
    },
    Step {
        command: "protolab certs acme --directory https://127.0.0.1:14000/dir --directory-ca pebble-ca.pem --domain localhost --http-01 127.0.0.1:5002",
        how: How::NotRun(
            "needs a pebble on fixed ports; tests/it/acme.rs starts pebble on free ports and \
             runs this command against it",
        ),
    },
    Step {
        command: "protolab proxy --listen-tls 0.0.0.0:443 --backend 127.0.0.1:3002 --acme app.example.com",
        how: How::NotRun(
            "needs the certificate of the command above; tests/it/acme.rs runs `proxy --acme` \
             through a renewal with a WSS client connected",
        ),
    },
    Step {
        command: "scripts/build-image",
        how: How::NotRun(
            "a release build (10 to 20 minutes); tests/it/containers.rs builds the same image \
             from this test's binary with `--binary` and runs it",
        ),
    },
    Step {
        command: "podman-compose -f deploy/compose.yaml up -d",
        how: How::NotRun(
            "tests/it/containers.rs brings the same file up on free ports and checks every app",
        ),
    },
    Step {
        command: "podman-compose -f deploy/compose.yaml down -v",
        how: How::NotRun("tests/it/containers.rs brings its stack down and checks nothing is left"),
    },
    Step {
        command: "cargo install --path crates/cli --locked && protolab compare",
        how: How::NotRun(
            "a release build of this same crate into ~/.cargo/bin (minutes); the commands below \
             run the binary cargo built for this test, and `protolab compare` runs below",
        ),
    },
    Step {
        command: "scripts/test",
        how: How::NotRun("it runs this test, among all the others"),
    },
    Step {
        command: "scripts/deploy-test",
        how: How::NotRun(
            "it builds a VM box and boots a guest under QEMU (15 minutes or more, as root, \
             with vagrant, libvirt and ansible); it is run by hand before a change to deploy/ \
             is submitted, and docs/vm-lab.md shows its output",
        ),
    },
    Step {
        command: "protolab up",
        how: How::Serve {
            root: false,
            ready: "ready",
            stop_before: Some("protolab up --keylog keys.log &"),
            readme_output: true,
        },
    },
    Step {
        command: "sudo setcap cap_net_raw+ep \"$(command -v protolab)\"",
        how: How::Run {
            root: true,
            expect: &[],
        },
    },
    Step {
        command: "curl -N http://localhost:3004/events",
        how: How::NotRun(
            "a stream that never ends by itself; crates/server/tests/it/sse.rs reads it with curl -N",
        ),
    },
    Step {
        command: "curl -N -H 'Last-Event-ID: EPOCH-SEQ' http://localhost:3004/events",
        how: How::NotRun(
            "EPOCH-SEQ stands for an id the stream gave; crates/server/tests/it/sse.rs resumes \
             with a real one",
        ),
    },
    Step {
        command: "curl -d hi 'http://localhost:3004/echo?stream=ID'",
        how: How::NotRun(
            "ID stands for the id of an open stream's hello event; crates/server/tests/it/sse.rs \
             posts to a real one",
        ),
    },
    Step {
        command: "protolab up --keylog keys.log &",
        how: How::Serve {
            root: false,
            ready: "ready",
            stop_before: Some("protolab up --proxy"),
            readme_output: false,
        },
    },
    Step {
        command: "protolab capture --port 3003 --keylog keys.log -w wss.pcapng",
        how: How::Serve {
            root: true,
            ready: "capturing on",
            stop_before: Some("tshark -r wss.pcapng -d tcp.port==3003,tls -Y websocket"),
            readme_output: false,
        },
    },
    Step {
        // The payoff: without `-d`, tshark 4.0 takes port 3003 for RSL and prints nothing.
        command: "tshark -r wss.pcapng -d tcp.port==3003,tls -Y websocket",
        how: How::Run {
            root: true,
            expect: &["WebSocket Binary"],
        },
    },
    Step {
        command: "protolab inspect wss.pcapng",
        how: How::Run {
            root: true,
            expect: &["HTTP 101 Switching Protocols", "WS binary"],
        },
    },
    Step {
        command: "protolab inspect --strip-secrets wss.pcapng public.pcapng",
        how: How::Run {
            root: true,
            expect: &[],
        },
    },
    Step {
        command: "protolab inspect public.pcapng --keylog keys.log",
        how: How::Run {
            root: true,
            expect: &["HTTP 101 Switching Protocols", "WS binary"],
        },
    },
    Step {
        command: "protolab inspect --inject-secrets keys.log public.pcapng shared.pcapng",
        how: How::Run {
            root: true,
            expect: &[],
        },
    },
    Step {
        command: "protolab inspect shared.pcapng",
        how: How::Run {
            root: true,
            expect: &["HTTP 101 Switching Protocols", "WS binary"],
        },
    },
    Step {
        command: "tshark -i lo -f 'tcp port 3002' -w ws.pcapng",
        how: How::Serve {
            root: true,
            ready: "Capture started",
            stop_before: Some("protolab inspect ws.pcapng"),
            readme_output: false,
        },
    },
    Step {
        command: "protolab inspect ws.pcapng",
        how: How::Run {
            root: true,
            expect: &["HTTP 101 Switching Protocols", "WS binary", "WS close"],
        },
    },
    Step {
        command: "protolab hub",
        how: How::Serve {
            root: false,
            ready: "ready",
            stop_before: Some(
                "protolab bench ws://localhost:3002/ws -c 50 --size 1KiB --duration 10s",
            ),
            readme_output: true,
        },
    },
    Step {
        command: "curl -N 'http://localhost:4000/connection/sse?channel=ops'",
        how: How::NotRun(
            "an SSE stream that runs until stopped; crates/hub/tests/it runs the same curl \
             against a hub and checks what it prints",
        ),
    },
    Step {
        command: "curl -d '{\"channel\":\"ops\",\"level\":\"error\",\"title\":\"disk\",\"body\":\"disk full\"}' http://localhost:4000/api/publish",
        how: How::Run {
            root: false,
            expect: &["\"channel\":\"ops\",\"offset\":1,"],
        },
    },
    Step {
        command: "curl -N -H 'Last-Event-ID: start' 'http://localhost:4000/connection/sse?channel=ops'",
        how: How::NotRun(
            "an SSE stream that runs until stopped; crates/hub/tests/it resumes with curl and \
             Last-Event-ID and checks what it prints",
        ),
    },
    Step {
        command: "protolab notify --follow /var/log/app.log --level-regex 'ERROR=error,WARN=warning' --channel ops",
        how: How::NotRun(
            "follows a log file until stopped; tests/it/notify.rs runs --follow against a real \
             hub: spooled while it is down, delivered once and in order when it is back",
        ),
    },
    Step {
        command: "protolab subscribe ops --since start",
        how: How::Serve {
            root: false,
            ready: "disk full",
            stop_before: Some(
                "protolab bench ws://localhost:3002/ws -c 50 --size 1KiB --duration 10s",
            ),
            readme_output: false,
        },
    },
    Step {
        command: "protolab up --proxy",
        how: How::Serve {
            root: false,
            ready: "ready",
            stop_before: Some(
                "protolab proxy --listen 127.0.0.1:8080 --listen-tls 127.0.0.1:8443 --backend \
                 127.0.0.1:3002 --backend 127.0.0.1:3012 --balance leastconn --metrics \
                 127.0.0.1:9100",
            ),
            readme_output: false,
        },
    },
    Step {
        command: "protolab proxy --listen 127.0.0.1:8080 --listen-tls 127.0.0.1:8443 --backend \
                  127.0.0.1:3002 --backend 127.0.0.1:3012 --balance leastconn --metrics \
                  127.0.0.1:9100",
        how: How::Serve {
            root: false,
            ready: "ready",
            stop_before: None,
            readme_output: false,
        },
    },
    Step {
        command: "/usr/sbin/haproxy -c -f haproxy.cfg",
        how: How::Run {
            root: false,
            expect: &["Configuration file is valid"],
        },
    },
];
