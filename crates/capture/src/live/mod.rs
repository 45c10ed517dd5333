//! Live capture on a Linux interface, written as a pcapng file with the TLS key log embedded.
//!
//! The principal type is [`LiveCapture`]: [`LiveCapture::start`] opens an `AF_PACKET` raw
//! socket on one interface (default `lo`) with a kernel filter for TCP on the given ports,
//! and a thread that spools every kept packet to an unnamed temporary file as it arrives.
//! [`LiveCapture::finish`] stops it and writes the final file: a section header, the
//! interface (link type of the interface, nanosecond timestamps), then — before the first
//! packet — a Decryption Secrets Block with the key log lines of the TLS sessions the capture
//! saw, then the packets. Wireshark and tshark decrypt such a file with no settings. The
//! secrets only exist once the handshakes have happened, which is why packets are spooled and
//! the file is written at the end.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use protolab_capture::live::{CaptureConfig, LiveCapture};
//! let capture = LiveCapture::start(CaptureConfig {
//!     ports: vec![3003],
//!     ..CaptureConfig::default()
//! })?; // returns once the socket is capturing; cheap, no await needed
//! // ... drive traffic, collect the key log (e.g. protolab_tls::KeyLogBuffer) ...
//! let key_log = String::new();
//! let out = std::path::PathBuf::from("capture.pcapng");
//! // Joining the thread and copying the spool block: keep them off the async workers.
//! let stats = tokio::task::spawn_blocking(move || {
//!     capture.finish(Some(key_log.as_bytes()), &out)
//! })
//! .await??;
//! println!("{} packets", stats.kept);
//! # Ok(()) }
//! ```
//!
//! What it does: loopback's duplicate (every packet passes the tap leaving and arriving; the
//! outgoing copy is dropped, as tcpdump does); kernel timestamps in nanoseconds; a snap
//! length; bounded memory (one packet buffer, the spool is on disk) and a bounded spool
//! ([`CaptureConfig::max_bytes`]); counts of packets seen, kept and dropped by the kernel
//! (from `SO_RXQ_OVFL`: drops are reported with the next packet received, so drops after
//! the last packet are not counted). What it does not do: link libpcap, capture non-TCP
//! traffic, or decode anything ([`crate::inspect`] reads the file it writes). Linux only.
//! Opening the socket needs `CAP_NET_RAW`; without it [`CaptureError::NoPermission`] says
//! how to get it.

mod bpf;
pub mod secrets;
mod socket;

use std::fs::File;
use std::io::{BufWriter, Read as _, Seek as _, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use protolab_wire::net::decode_tcp;
use protolab_wire::pcapng;
use serde::Serialize;
use thiserror::Error;

pub use bpf::MAX_PORTS;
use secrets::ClientRandoms;

/// Default snap length: the most bytes kept per packet (tcpdump's default).
pub const DEFAULT_SNAPLEN: u32 = 262_144;
/// Smallest snap length accepted: Ethernet, IPv6 and a TCP header with options.
pub const MIN_SNAPLEN: u32 = 128;
/// Largest snap length accepted (a loopback GSO packet is at most 64 KiB plus headers).
pub const MAX_SNAPLEN: u32 = 262_144;
/// Default cap on the spooled packets, in bytes of pcapng blocks.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default socket receive buffer: room for bursts while the thread writes to disk.
pub const DEFAULT_BUFFER_BYTES: usize = 8 << 20;
/// Largest key log [`read_key_log`] reads.
pub const MAX_KEY_LOG_BYTES: u64 = 256 << 20;
/// Most key log bytes per Decryption Secrets Block; larger key logs take several blocks,
/// split at line ends, all before the first packet.
const SECRETS_PER_BLOCK: usize = 8 << 20;

/// What to capture. Every field has a default ([`CaptureConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Interface name. Default `lo`.
    pub interface: String,
    /// Keep TCP packets with one of these ports on either side; empty keeps every TCP
    /// packet. At most [`MAX_PORTS`]. Default: empty.
    pub ports: Vec<u16>,
    /// Most bytes kept per packet, [`MIN_SNAPLEN`]..=[`MAX_SNAPLEN`]; longer packets are cut
    /// and keep their original length in the file. Default [`DEFAULT_SNAPLEN`].
    pub snaplen: u32,
    /// Stop by itself after this long. Default: none (until stopped).
    pub duration: Option<Duration>,
    /// Stop by itself after keeping this many packets. Default: none.
    pub count: Option<u64>,
    /// Stop by itself once the spooled packets reach this many bytes (disk use while
    /// capturing, and about the final file size). Default [`DEFAULT_MAX_BYTES`] (1 GiB).
    pub max_bytes: u64,
    /// Socket receive buffer requested, in bytes; the kernel caps it at
    /// `net.core.rmem_max`, root included (`SO_RCVBUF`). Default [`DEFAULT_BUFFER_BYTES`].
    pub buffer_bytes: usize,
    /// Directory of the spool file (an unnamed temporary file, gone when the capture is).
    /// Default: the system temporary directory.
    pub spool_dir: Option<PathBuf>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            interface: "lo".to_string(),
            ports: Vec::new(),
            snaplen: DEFAULT_SNAPLEN,
            duration: None,
            count: None,
            max_bytes: DEFAULT_MAX_BYTES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            spool_dir: None,
        }
    }
}

/// Why a capture cannot start or its file cannot be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// Opening a raw socket was refused.
    #[error("capturing needs the CAP_NET_RAW capability: run as root, or grant it once with sudo setcap cap_net_raw+ep $(which protolab)")]
    NoPermission,
    /// No interface has this name.
    #[error("no network interface named `{name}`; available: {}", available.join(", "))]
    UnknownInterface {
        /// The name asked for.
        name: String,
        /// The interfaces that exist.
        available: Vec<String>,
    },
    /// The interface's frames have a link layer we cannot write down.
    #[error("cannot capture on `{name}`: its link type (ARP hardware type {arp_type}) is not supported; capture on lo or an Ethernet interface")]
    UnsupportedInterface {
        /// The interface.
        name: String,
        /// Its ARP hardware type (`/sys/class/net/NAME/type`).
        arp_type: u16,
    },
    /// More ports than the kernel filter takes.
    #[error("{count} ports given; one capture takes at most {MAX_PORTS}")]
    TooManyPorts {
        /// Ports given.
        count: usize,
    },
    /// A snap length out of range.
    #[error("snap length {0} is outside {MIN_SNAPLEN}..={MAX_SNAPLEN} bytes")]
    BadSnaplen(u32),
    /// A socket call failed.
    #[error("{what}: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key log that group or others may read.
    #[error("the key log {} is readable by others (mode {mode:o}); TLS secrets must stay private: run `chmod 600 {}`", path.display(), path.display())]
    KeyLogExposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key log larger than [`MAX_KEY_LOG_BYTES`].
    #[error("the key log {} is {len} bytes, over the {MAX_KEY_LOG_BYTES}-byte limit; start a fresh one for this capture", path.display())]
    KeyLogTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The capture thread died; the spooled packets are lost.
    #[error("the capture thread panicked; its packets are lost")]
    ThreadPanicked,
}

/// Why capturing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// [`LiveCapture::stop`], [`StopHandle::stop`], `finish` or drop.
    Stopped,
    /// [`CaptureConfig::duration`] passed.
    Duration,
    /// [`CaptureConfig::count`] packets were kept.
    Count,
    /// [`CaptureConfig::max_bytes`] was reached; later packets are not in the file.
    SizeLimit,
    /// Receiving or spooling failed ([`CaptureStats::error`] says how); the packets before
    /// are kept.
    Error,
}

/// Counts of a capture, live ([`LiveCapture::progress`]) or final.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// Interface captured on.
    pub interface: String,
    /// Port filter (empty: every TCP port).
    pub ports: Vec<u16>,
    /// Packets the kernel filter passed to us.
    pub seen: u64,
    /// Packets kept (written to the file).
    pub kept: u64,
    /// Captured bytes of the kept packets (link layer and up, after the snap length).
    pub bytes: u64,
    /// Kept packets cut at the snap length.
    pub truncated: u64,
    /// Loopback's outgoing copies dropped here (the kernel filter drops nearly all of them).
    pub duplicates: u64,
    /// Packets the userspace check refused (another interface or port, not TCP, undecodable).
    pub filtered: u64,
    /// Packets the kernel dropped because the socket buffer was full, as reported with the
    /// packets after them.
    pub dropped_by_kernel: u64,
    /// Time from start until capturing ended (or until now, while running), milliseconds.
    pub elapsed_ms: u64,
    /// Why capturing ended; `None` while it runs.
    pub stop: Option<StopReason>,
    /// What failed, when `stop` is [`StopReason::Error`].
    pub error: Option<String>,
    /// TLS ClientHellos seen (distinct client randoms).
    pub client_hellos: u64,
    /// TLS sessions whose secrets were embedded (set by `finish`).
    pub secrets_sessions: u64,
    /// Sessions in the given key log left out because the capture holds none of their
    /// traffic (set by `finish`).
    pub secrets_unmatched: u64,
}

#[derive(Debug, Default)]
struct Counters {
    seen: AtomicU64,
    kept: AtomicU64,
    bytes: AtomicU64,
    truncated: AtomicU64,
    duplicates: AtomicU64,
    filtered: AtomicU64,
    dropped: AtomicU64,
    client_hellos: AtomicU64,
    finished: AtomicBool,
}

/// Stops a capture from elsewhere (a signal handler, another task). Cloneable and cheap.
#[derive(Debug, Clone)]
pub struct StopHandle {
    stopping: Arc<AtomicBool>,
    waker: Arc<UnixStream>,
}

impl StopHandle {
    /// Asks the capture thread to stop; returns at once. Packets already received are kept.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // A full pipe means the thread has a wake-up pending already.
        let _ = (&*self.waker).write(&[1]);
    }
}

/// What the capture thread hands back.
struct Spool {
    file: File,
    randoms: ClientRandoms,
    stop: StopReason,
    error: Option<String>,
    elapsed: Duration,
}

/// A running (or stopped, not yet written) capture. Dropping it stops the thread and
/// discards the spooled packets.
#[derive(Debug)]
pub struct LiveCapture {
    config: CaptureConfig,
    link_type: u16,
    counters: Arc<Counters>,
    stopper: StopHandle,
    started: Instant,
    thread: Option<JoinHandle<Spool>>,
    spool: Option<Spool>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Starts capturing. Returns once the socket is open with its filter attached, so
    /// traffic sent after this call is captured. Blocks only briefly (a few syscalls), so
    /// it may be called from async code directly.
    pub fn start(config: CaptureConfig) -> Result<Self, CaptureError> {
        if config.ports.len() > MAX_PORTS {
            return Err(CaptureError::TooManyPorts {
                count: config.ports.len(),
            });
        }
        if !(MIN_SNAPLEN..=MAX_SNAPLEN).contains(&config.snaplen) {
            return Err(CaptureError::BadSnaplen(config.snaplen));
        }
        let iface = socket::find_interface(&config.interface)?;
        let socket = socket::open(&iface, &config.ports, config.buffer_bytes)?;
        let spool_dir = config.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
        let spool = tempfile::tempfile_in(&spool_dir).map_err(|source| CaptureError::Io {
            what: "creating the spool file in",
            path: spool_dir.clone(),
            source,
        })?;
        let (waker, wake_rx) = UnixStream::pair().map_err(|source| CaptureError::Socket {
            what: "creating the stop channel",
            source,
        })?;
        wake_rx
            .set_nonblocking(true)
            .map_err(|source| CaptureError::Socket {
                what: "creating the stop channel",
                source,
            })?;
        let stopper = StopHandle {
            stopping: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(waker),
        };
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        let worker = Worker {
            socket,
            wake_rx,
            stopping: stopper.stopping.clone(),
            counters: counters.clone(),
            iface: iface.clone(),
            config: config.clone(),
            started,
        };
        let thread = std::thread::Builder::new()
            .name(format!("capture {}", iface.name))
            .spawn(move || worker.run(spool))
            .map_err(|source| CaptureError::Socket {
                what: "starting the capture thread",
                source,
            })?;
        tracing::debug!(interface = %iface.name, ports = ?config.ports, "capture started");
        Ok(Self {
            config,
            link_type: iface.link_type,
            counters,
            stopper,
            started,
            thread: Some(thread),
            spool: None,
        })
    }

    /// The pcapng link type of the interface (1, Ethernet, on `lo`).
    pub fn link_type(&self) -> u16 {
        self.link_type
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &CaptureConfig {
        &self.config
    }

    /// A handle that stops the capture from another thread or task.
    pub fn stop_handle(&self) -> StopHandle {
        self.stopper.clone()
    }

    /// Whether capturing has ended by itself (duration, count, size limit, error) or by a
    /// [`StopHandle`]. Cheap: poll it as often as you like.
    pub fn is_finished(&self) -> bool {
        self.counters.finished.load(Ordering::SeqCst)
    }

    /// The counts so far; cheap, for a progress display.
    pub fn progress(&self) -> CaptureStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (elapsed, stop, error) = match &self.spool {
            Some(s) => (s.elapsed, Some(s.stop), s.error.clone()),
            None => (self.started.elapsed(), None, None),
        };
        CaptureStats {
            interface: self.config.interface.clone(),
            ports: self.config.ports.clone(),
            seen: get(&c.seen),
            kept: get(&c.kept),
            bytes: get(&c.bytes),
            truncated: get(&c.truncated),
            duplicates: get(&c.duplicates),
            filtered: get(&c.filtered),
            dropped_by_kernel: get(&c.dropped),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            stop,
            error,
            client_hellos: get(&c.client_hellos),
            secrets_sessions: 0,
            secrets_unmatched: 0,
        }
    }

    /// Stops capturing (if it has not ended by itself) and waits for the thread, which
    /// takes at most the time to flush its buffered packets to the spool. The packets stay
    /// spooled for [`finish`](Self::finish). Calling it again does nothing more.
    pub fn stop(&mut self) -> Result<CaptureStats, CaptureError> {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let spool = thread.join().map_err(|_| CaptureError::ThreadPanicked)?;
            self.spool = Some(spool);
        }
        Ok(self.progress())
    }

    /// Stops capturing and writes the file `out`: section header, interface, a Decryption
    /// Secrets Block with the lines of `secrets` (an NSS key log) that belong to TLS
    /// sessions whose ClientHello was captured, then the packets. The file appears whole
    /// or not at all (written beside `out`, then renamed), with mode 0600 when it holds
    /// secrets and 0644 otherwise. Blocks for the copy: from async code, call it in
    /// `spawn_blocking`.
    pub fn finish(
        mut self,
        secrets: Option<&[u8]>,
        out: &Path,
    ) -> Result<CaptureStats, CaptureError> {
        let mut stats = self.stop()?;
        let spool = self.spool.take().ok_or(CaptureError::ThreadPanicked)?;
        let selection = secrets.map(|s| secrets::select(s, &spool.randoms));
        let text = selection.as_ref().map_or("", |s| s.text.as_str());
        if let Some(s) = &selection {
            stats.secrets_sessions = s.sessions as u64;
            stats.secrets_unmatched = s.unmatched as u64;
        }
        write_file(out, self.link_type, self.config.snaplen, text, spool.file)?;
        Ok(stats)
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

fn write_file(
    out: &Path,
    link_type: u16,
    snaplen: u32,
    secrets: &str,
    mut spool: File,
) -> Result<(), CaptureError> {
    let io = |what| {
        move |source| CaptureError::Io {
            what,
            path: out.to_path_buf(),
            source,
        }
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".protolab-capture-")
        .suffix(".pcapng")
        .tempfile_in(dir)
        .map_err(io("creating a file beside"))?;
    let mode = if secrets.is_empty() { 0o644 } else { 0o600 };
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of"))?;
    let mut head = Vec::new();
    pcapng::write_section_header(&mut head);
    pcapng::write_interface(&mut head, link_type, snaplen);
    for chunk in secrets::chunks(secrets, SECRETS_PER_BLOCK) {
        pcapng::write_secrets(&mut head, pcapng::SECRETS_TLS_KEY_LOG, chunk.as_bytes());
    }
    let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file());
    writer.write_all(&head).map_err(io("writing"))?;
    spool.rewind().map_err(io("reading back the packets for"))?;
    std::io::copy(&mut spool, &mut writer).map_err(io("writing the packets of"))?;
    writer.flush().map_err(io("writing"))?;
    drop(writer);
    tmp.persist(out).map_err(|e| CaptureError::Io {
        what: "renaming the finished capture to",
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Reads a key log for [`LiveCapture::finish`], refusing one that group or others may read
/// (like `protolab up --keylog` refuses to write into one) or one over
/// [`MAX_KEY_LOG_BYTES`].
pub fn read_key_log(path: &Path) -> Result<Vec<u8>, CaptureError> {
    let io = |source| CaptureError::Io {
        what: "reading the key log",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    check_key_log_file(path, &file)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_LOG_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// Checks a key log's mode and size without reading it: call it before capturing so a bad
/// key log stops the capture before it starts. A file that does not exist yet is fine (the
/// lab may create it later); [`read_key_log`] checks again.
pub fn check_key_log(path: &Path) -> Result<(), CaptureError> {
    match File::open(path) {
        Ok(file) => check_key_log_file(path, &file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CaptureError::Io {
            what: "reading the key log",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn check_key_log_file(path: &Path, file: &File) -> Result<(), CaptureError> {
    let meta = file.metadata().map_err(|source| CaptureError::Io {
        what: "reading the key log",
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaptureError::KeyLogExposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_LOG_BYTES {
        return Err(CaptureError::KeyLogTooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    Ok(())
}

/// The capture thread's state.
struct Worker {
    socket: socket2::Socket,
    wake_rx: UnixStream,
    stopping: Arc<AtomicBool>,
    counters: Arc<Counters>,
    iface: socket::Interface,
    config: CaptureConfig,
    started: Instant,
}

impl Worker {
    fn run(self, spool: File) -> Spool {
        let mut out = BufWriter::with_capacity(256 << 10, spool);
        let mut randoms = ClientRandoms::default();
        let (stop, error) = match self.receive_all(&mut out, &mut randoms) {
            Ok(stop) => (stop, None),
            Err(e) => (StopReason::Error, Some(e)),
        };
        let elapsed = self.started.elapsed();
        // The flush error, if any, is the more important one: it means lost packets.
        let (file, stop, error) = match out.into_inner() {
            Ok(file) => (file, stop, error),
            Err(e) => {
                let (err, writer) = e.into_parts();
                let msg = format!("writing the spool file: {err}");
                (writer.into_parts().0, StopReason::Error, Some(msg))
            }
        };
        self.counters.finished.store(true, Ordering::SeqCst);
        tracing::debug!(?stop, ?error, "capture thread ended");
        Spool {
            file,
            randoms,
            stop,
            error,
            elapsed,
        }
    }

    fn receive_all(
        &self,
        out: &mut BufWriter<File>,
        randoms: &mut ClientRandoms,
    ) -> Result<StopReason, String> {
        let deadline = self.config.duration.map(|d| self.started + d);
        let snaplen = usize::try_from(self.config.snaplen).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; snaplen];
        let mut cmsg = socket::cmsg_space();
        let mut block = Vec::with_capacity(snaplen + 64);
        let mut spooled = 0u64;
        let c = &self.counters;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(StopReason::Stopped);
            }
            if let Some(max) = self.config.count {
                if c.kept.load(Ordering::Relaxed) >= max {
                    return Ok(StopReason::Count);
                }
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(StopReason::Duration);
                    }
                    // Round up so the wait does not end a millisecond early and spin.
                    PollTimeout::try_from(left + Duration::from_millis(1))
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            // Packets sit in the kernel's queue until we read them, so bytes buffered in
            // userspace must reach the spool before we may sleep.
            out.flush()
                .map_err(|e| format!("writing the spool file: {e}"))?;
            let mut fds = [
                PollFd::new(socket::fd(&self.socket), PollFlags::POLLIN),
                PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(format!("waiting for packets: {e}")),
            }
            // Drain what is queued (bounded, so a stop request is seen under load too).
            for _ in 0..4096 {
                let got = socket::receive(socket::fd(&self.socket), &mut buf, &mut cmsg)
                    .map_err(|e| format!("receiving a packet: {e}"))?;
                let Some(r) = got else { break };
                c.seen.fetch_add(1, Ordering::Relaxed);
                if let Some(d) = r.drops {
                    c.dropped.fetch_max(u64::from(d), Ordering::Relaxed);
                }
                if u32::try_from(r.ifindex).ok() != Some(self.iface.index) {
                    c.filtered.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if self.iface.loopback && u32::from(r.pkttype) == bpf::PACKET_OUTGOING {
                    c.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let data = &buf[..r.len.min(buf.len())];
                let Ok(seg) = decode_tcp(self.iface.link_type, data) else {
                    c.filtered.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let ports = &self.config.ports;
                if !ports.is_empty()
                    && !ports
                        .iter()
                        .any(|&p| p == seg.src_port || p == seg.dst_port)
                {
                    c.filtered.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if seg.payload.first() == Some(&22) {
                    let before = randoms.len();
                    randoms.note(seg.payload);
                    if randoms.len() > before {
                        c.client_hellos.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let timestamp_ns = r.timestamp_ns.unwrap_or_else(now_ns);
                block.clear();
                let original_len = u32::try_from(r.len).unwrap_or(u32::MAX);
                pcapng::write_packet(&mut block, 0, timestamp_ns, original_len, data);
                if spooled + block.len() as u64 > self.config.max_bytes {
                    return Ok(StopReason::SizeLimit);
                }
                out.write_all(&block)
                    .map_err(|e| format!("writing the spool file: {e}"))?;
                spooled += block.len() as u64;
                c.kept.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                if data.len() < r.len {
                    c.truncated.fetch_add(1, Ordering::Relaxed);
                }
                if self
                    .config
                    .count
                    .is_some_and(|max| c.kept.load(Ordering::Relaxed) >= max)
                {
                    return Ok(StopReason::Count);
                }
            }
            // Empty the wake-up channel; the flag says whether to stop.
            let mut sink = [0u8; 64];
            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
