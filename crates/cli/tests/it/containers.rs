// The container image (deploy/Containerfile, scripts/build-image) and the compose stack
// (deploy/compose.yaml) run with podman: curl and Python `websockets` reach every app, the
// processes are not root, the root filesystem is read-only, the healthcheck passes and can
// fail, and `down` leaves nothing behind.
//
// The image is built from this test run's own protolab binary (`build-image --binary`, which
// copies the libraries a dynamically linked binary loads): the same Containerfile and rootfs
// as the release image without a second, 10 to 20 minute, release build inside the tests.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use protolab_test_support::{free_ports, repo_root, require, Peer};

const IMAGE: &str = "localhost/protolab:test";
const REDIS_IMAGE: &str = "localhost/protolab-redis:test";

fn podman() -> PathBuf {
    require("podman", "apt-get install -y podman runc")
}

/// Runs `cmd`, returning its output whatever the status.
fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|err| panic!("{cmd:?} does not start: {err}"))
}

/// Runs `cmd` and returns its stdout; panics with its stderr unless it succeeds.
fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image_id(name: &str) -> Option<String> {
    let out =
        output(Command::new(podman()).args(["image", "inspect", "--format", "{{.Id}}", name]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds both images once per test run; a previous run's images under the same tags are
/// removed so runs do not pile up untagged images.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require("redis-server", "apt-get install -y redis-server");
        let before: Vec<_> = [IMAGE, REDIS_IMAGE]
            .iter()
            .filter_map(|i| image_id(i))
            .collect();
        let build_dir = tempfile::tempdir().expect("build dir");
        let started = Instant::now();
        let printed = ok(Command::new(repo_root().join("scripts/build-image"))
            .args(["--binary", env!("CARGO_BIN_EXE_protolab")])
            .env("ENGINE", podman())
            .env("IMAGE", IMAGE)
            .env("REDIS_IMAGE", REDIS_IMAGE)
            .env("BUILD_DIR", build_dir.path()));
        println!("{printed}built in {:?}", started.elapsed());
        assert!(printed.contains(&format!("image {IMAGE}: ")), "{printed}");
        for old in before {
            if ![IMAGE, REDIS_IMAGE]
                .iter()
                .any(|i| image_id(i).as_deref() == Some(&old))
            {
                let _ = output(Command::new(podman()).args(["rmi", &old]));
            }
        }
    });
}

/// Polls `check` until it holds, for up to `limit`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn curl(args: &[&str]) -> String {
    ok(Command::new(require("curl", "apt-get install -y curl"))
        .args(["-sS", "--max-time", "10"])
        .args(args))
}

/// One text and one binary echo over `url` with Python `websockets`.
async fn python_echo(url: &str, ca: &Path) {
    let mut cmd = Peer::PythonWs.command(["--cafile", ca.to_str().unwrap(), "echo", url]);
    let out = protolab_test_support::run_json(
        {
            cmd.kill_on_drop(true);
            cmd
        },
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out["text_echo"], "hello from python", "{url}: {out}");
    assert_eq!(out["binary_echo_ok"], true, "{url}: {out}");
}

/// The user the container's main process runs as, as (name inside, uid on the host).
fn process_user(container: &str) -> (String, String) {
    let top = ok(Command::new(podman()).args(["top", container, "user", "huser"]));
    let line = top
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("podman top printed no process: {top}"));
    let mut fields = line.split_whitespace();
    (
        fields.next().unwrap_or_default().to_owned(),
        fields.next().unwrap_or_default().to_owned(),
    )
}

/// Tries to write to the container's root filesystem (protolab creating its state directory
/// there); returns the error it printed.
fn write_to_root_fails(container: &str) -> String {
    let out = output(Command::new(podman()).args([
        "exec",
        container,
        "/usr/bin/protolab",
        "--home",
        "/written-by-test",
        "certs",
        "init",
    ]));
    assert!(!out.status.success(), "{container}: writing to / succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Removes a container when the test ends, passed or not.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = output(Command::new(podman()).args(["rm", "-f", "-v", &self.0]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_serves_every_app_as_a_non_root_user_on_a_read_only_root() {
    images();
    let inspect = ok(Command::new(podman()).args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{index .Config.Labels \"org.opencontainers.image.title\"}}|{{.HealthCheck.Test}}",
        IMAGE,
    ]));
    assert_eq!(
        inspect.trim(),
        "10001:10001|protolab|[CMD /usr/bin/protolab healthcheck]",
        "user, OCI title label and HEALTHCHECK"
    );

    let name = format!("protolab-it-image-{}", std::process::id());
    let _container = Container(name.clone());
    let ports = free_ports(4);
    let mut run = Command::new(podman());
    run.args([
        "run",
        "-d",
        "--name",
        &name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
    ]);
    run.args(["--security-opt", "no-new-privileges"]);
    for (port, inside) in ports.iter().zip(3000..) {
        run.arg("-p").arg(format!("127.0.0.1:{port}:{inside}"));
    }
    ok(run.arg(IMAGE));

    let http = format!("http://127.0.0.1:{}", ports[0]);
    eventually("the http app answering", Duration::from_secs(60), || {
        output(Command::new("curl").args(["-sf", "--max-time", "2", &format!("{http}/healthz")]))
            .status
            .success()
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    ok(Command::new(podman())
        .args(["cp", &format!("{name}:/data/ca.pem")])
        .arg(&ca));

    assert_eq!(curl(&[&format!("{http}/echo?msg=hello")]), "hello");
    let https = format!("https://localhost:{}/echo", ports[1]);
    assert_eq!(
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            &https,
            "-d",
            "posted body"
        ]),
        "posted body"
    );
    python_echo(&format!("ws://localhost:{}/ws", ports[2]), &ca).await;
    python_echo(&format!("wss://localhost:{}/ws", ports[3]), &ca).await;

    let (user, uid) = process_user(&name);
    assert_eq!((user.as_str(), uid.as_str()), ("protolab", "10001"));
    let refused = write_to_root_fails(&name);
    assert!(refused.contains("Read-only file system"), "{refused}");

    // The image's own check passes with every app up, and fails for one that is not there.
    ok(Command::new(podman()).args(["healthcheck", "run", &name]));
    let failed = output(Command::new(podman()).args([
        "exec",
        &name,
        "/usr/bin/protolab",
        "healthcheck",
        "ws://127.0.0.1:3999/ws",
    ]));
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("no echo came back"),
        "{failed:?}"
    );
}

/// A compose project brought down (volumes too) when the test ends, passed or not.
struct Stack {
    project: String,
    env: Vec<(String, String)>,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(require(
            "podman-compose",
            "apt-get install -y podman-compose",
        ));
        cmd.args(["-p", &self.project, "-f"])
            .arg(repo_root().join("deploy/compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=io.podman.compose.project={}", self.project);
        let mut left = Vec::new();
        let containers = ok(Command::new(podman()).args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &label,
        ]));
        left.extend(containers.lines().map(|c| format!("container {c}")));
        let networks = ok(Command::new(podman()).args(["network", "ls", "--format", "{{.Name}}"]));
        left.extend(
            networks
                .lines()
                .filter(|n| n.starts_with(&self.project))
                .map(|n| format!("network {n}")),
        );
        let volumes = ok(Command::new(podman()).args(["volume", "ls", "--format", "{{.Name}}"]));
        left.extend(
            volumes
                .lines()
                .filter(|v| v.starts_with(&self.project))
                .map(|v| format!("volume {v}")),
        );
        left
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = output(&mut self.compose(&["down", "-v"]));
        let _ = output(Command::new(podman()).args([
            "network",
            "rm",
            &format!("{}_default", self.project),
        ]));
    }
}

const SERVICES: [&str; 7] = ["http", "https", "ws", "wss", "proxy", "hub", "redis"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_serves_every_app_hardened_and_down_leaves_nothing() {
    images();
    let ports = free_ports(7);
    let names = ["HTTP", "HTTPS", "WS", "WSS", "PROXY", "PROXY_TLS", "HUB"];
    let mut env: Vec<(String, String)> = names
        .iter()
        .zip(&ports)
        .map(|(n, p)| (format!("PROTOLAB_{n}_PORT"), p.to_string()))
        .collect();
    env.push(("PROTOLAB_IMAGE".into(), IMAGE.into()));
    env.push(("PROTOLAB_REDIS_IMAGE".into(), REDIS_IMAGE.into()));
    let stack = Stack {
        project: format!("protolabit{}", std::process::id()),
        env,
    };
    let started = Instant::now();
    ok(&mut stack.compose(&["up", "-d"]));
    println!("up -d took {:?}", started.elapsed());

    // Every service's own healthcheck: the apps, the proxy through to the ws app, the hub, Redis.
    // A service that never gets healthy fails with its last log lines: a name the stack's
    // DNS cannot resolve, a port taken, a refused flag.
    for service in SERVICES {
        let container = stack.container(service);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !output(Command::new(podman()).args(["healthcheck", "run", &container]))
            .status
            .success()
        {
            if Instant::now() >= deadline {
                let logs = output(Command::new(podman()).args(["logs", "--tail", "5", &container]));
                panic!(
                    "{service} not healthy within 90 s; its last log lines:\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    println!("healthy after {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    ok(Command::new(podman())
        .args(["cp", &format!("{}:/data/ca.pem", stack.container("https"))])
        .arg(&ca));
    let cacert = ca.to_str().unwrap();
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{}/echo?msg=hello", ports[0])]),
        "hello"
    );
    assert_eq!(
        curl(&[
            "--cacert",
            cacert,
            &format!("https://localhost:{}/echo", ports[1]),
            "-d",
            "posted"
        ]),
        "posted"
    );
    python_echo(&format!("ws://localhost:{}/ws", ports[2]), &ca).await;
    // The wss app and the proxy's TLS listener serve certificates of the one CA on the volume.
    python_echo(&format!("wss://localhost:{}/ws", ports[3]), &ca).await;
    python_echo(&format!("ws://localhost:{}/ws", ports[4]), &ca).await;
    python_echo(&format!("wss://localhost:{}/ws", ports[5]), &ca).await;
    // The hub is ready only with its broker reachable: Redis on the stack's network.
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{}/readyz", ports[6])]).trim(),
        "ready"
    );

    for service in SERVICES {
        let container = stack.container(service);
        let (user, uid) = process_user(&container);
        assert!(
            user != "root" && uid != "0",
            "{service} runs as {user} ({uid})"
        );
        let refused = write_to_root_if_protolab(service, &container);
        assert!(
            refused
                .as_ref()
                .is_none_or(|e| e.contains("Read-only file system")),
            "{service}: {refused:?}"
        );
        let capabilities = ok(Command::new(podman()).args(["top", &container, "capeff"]));
        assert_eq!(
            capabilities.lines().nth(1).map(str::trim),
            Some("none"),
            "{service}: {capabilities}"
        );
        let settings = ok(Command::new(podman()).args([
            "inspect",
            "--format",
            "{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.SecurityOpt}}|{{.HostConfig.Memory}}|{{.HostConfig.NetworkMode}}",
            &container,
        ]));
        let fields: Vec<_> = settings.trim().split('|').collect();
        assert_eq!(fields[0], "true", "{service}: read-only root: {settings}");
        assert!(
            fields[1].contains("no-new-privileges"),
            "{service}: {settings}"
        );
        assert_eq!(
            fields[2],
            (256u64 << 20).to_string(),
            "{service}: memory limit: {settings}"
        );
        assert_ne!(fields[3], "host", "{service}: {settings}");
    }

    // The CA key on the volume is the image user's and private.
    let volume = format!("{}_protolab-data", stack.project);
    let mountpoint = ok(Command::new(podman()).args([
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &volume,
    ]));
    let key = Path::new(mountpoint.trim()).join("ca-key.pem");
    let meta = std::fs::metadata(&key).expect("CA key on the volume");
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{}",
        key.display()
    );
    assert_eq!(meta.uid(), 10001);

    ok(&mut stack.compose(&["down", "-v"]));
    let left = stack.leftovers();
    // podman-compose 1.0.3 (Debian 12) never removes the project's network on `down`; later
    // versions and docker compose do. Anything else left is a failure.
    let network = format!("network {}_default", stack.project);
    assert!(
        left.iter().all(|l| *l == network),
        "left after down -v: {left:?}"
    );
    if !left.is_empty() {
        ok(Command::new(podman()).args(["network", "rm", &format!("{}_default", stack.project)]));
    }
    assert_eq!(stack.leftovers(), Vec::<String>::new());
}

/// The write test needs protolab in the container; Redis's image has only Redis (its root is
/// read-only all the same, which `podman inspect` shows above).
fn write_to_root_if_protolab(service: &str, container: &str) -> Option<String> {
    (service != "redis").then(|| write_to_root_fails(container))
}

/// The same files are valid for docker-compose v1 (what Debian 12 and the VM lab's guest have):
/// `config` checks them against its schema and merges the key-log override without a daemon.
#[test]
fn compose_files_are_valid_for_docker_compose() {
    let docker_compose = require("docker-compose", "apt-get install -y docker-compose");
    let deploy = repo_root().join("deploy");
    let merged = ok(Command::new(docker_compose)
        .arg("-f")
        .arg(deploy.join("compose.yaml"))
        .arg("-f")
        .arg(deploy.join("compose.keylog.yaml"))
        .arg("config"));
    for service in SERVICES {
        assert!(
            merged.contains(&format!("\n  {service}:\n")),
            "{service} missing:\n{merged}"
        );
    }
    assert!(
        merged.contains("command: up --bind 0.0.0.0 --only wss --keylog /data/keylog.txt"),
        "the override replaces the wss command:\n{merged}"
    );
    assert!(merged.contains("read_only: true") && merged.contains("no-new-privileges:true"));
}
