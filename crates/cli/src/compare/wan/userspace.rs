//! The userspace link: two TUN devices, one per namespace, and a thread per direction that
//! reads IP packets from one and writes them to the other through a [`Shaper`].
//!
//! It exists for kernels built without netem. It works on IP packets, not on TCP streams,
//! so the kernels at both ends see a real delayed, lossy link: handshakes cost real round
//! trips, TCP retransmits real losses. The cost is a read, a copy and a write per packet in
//! this process, and the kernel hands a TUN no TSO/GSO super-packets, so bulk transfers cost
//! a syscall per MTU-sized packet each way.

use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use tun_rs::SyncDevice;

use super::shaper::{LinkConfig, LinkStats, Shaper, Verdict};

/// Name prefix of the forwarding threads, so their CPU time can be read apart.
pub const THREADS: &str = "pl-wan";

/// Largest packet read from a TUN: the MTU is 1500, and without offloads the kernel never
/// hands a TUN more than the MTU, but a buffer of the IP maximum cannot truncate anything.
const READ_BUFFER: usize = 65_536;
/// Packets read per wake-up before releasing due ones, so a flood on the input cannot
/// starve the output and push releases late.
const READ_BATCH: usize = 64;

/// Opens a TUN device named `name` (no packet-information header, MTU 1500) in the calling
/// thread's network namespace; it disappears when the returned device is dropped.
pub fn open_tun(name: &str) -> io::Result<SyncDevice> {
    let device = tun_rs::DeviceBuilder::new()
        .name(name)
        .mtu(1500)
        .packet_information(false)
        .build_sync()?;
    device.set_nonblocking(true)?;
    Ok(device)
}

/// Counters of one direction, updated by its thread as it goes.
#[derive(Debug, Default)]
struct Counters {
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    lost: AtomicU64,
    queue_full: AtomicU64,
    send_errors: AtomicU64,
    late_us: AtomicU64,
}

/// Packet counts of one direction so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Packets read from the sending side.
    pub packets_in: u64,
    /// Packets written to the receiving side.
    pub packets_out: u64,
    /// Packets lost at random (`--loss`).
    pub lost: u64,
    /// Packets dropped on a full queue (rate limit backlog or the byte bound).
    pub queue_full: u64,
    /// Packets the receiving TUN refused.
    pub send_errors: u64,
    /// Microseconds the released packets left after their due time, added up: how far the
    /// forwarding thread fell behind the link's schedule (waking late, or waiting for a CPU).
    pub late_us: u64,
}

impl Counters {
    fn publish(&self, stats: LinkStats) {
        self.packets_in.store(stats.packets_in, Ordering::Relaxed);
        self.packets_out.store(stats.packets_out, Ordering::Relaxed);
        self.lost.store(stats.lost, Ordering::Relaxed);
        self.queue_full.store(stats.queue_full, Ordering::Relaxed);
    }

    fn read(&self) -> DirectionStats {
        DirectionStats {
            packets_in: self.packets_in.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            late_us: self.late_us.load(Ordering::Relaxed),
        }
    }
}

/// The two forwarding threads; dropping it stops and joins them, which closes both TUNs.
#[derive(Debug)]
pub struct Forwarder {
    /// Closed on drop: the threads poll its peer and stop at end of file.
    stop: Option<UnixStream>,
    threads: Vec<JoinHandle<()>>,
    to_lab: Arc<Counters>,
    to_host: Arc<Counters>,
}

impl Forwarder {
    /// Starts forwarding between `host` and `lab`, each direction shaped by its `config`
    /// (they differ only in the seed).
    pub fn start(
        host: SyncDevice,
        lab: SyncDevice,
        to_lab: LinkConfig,
        to_host: LinkConfig,
    ) -> io::Result<Self> {
        let (stop, stopped) = UnixStream::pair()?;
        let (host, lab) = (Arc::new(host), Arc::new(lab));
        let counters = (Arc::new(Counters::default()), Arc::new(Counters::default()));
        let mut threads = Vec::new();
        for (name, from, to, config, counters) in [
            ("pl-wan-up", &host, &lab, to_lab, &counters.0),
            ("pl-wan-down", &lab, &host, to_host, &counters.1),
        ] {
            let (from, to, counters) = (Arc::clone(from), Arc::clone(to), Arc::clone(counters));
            let stopped = stopped.try_clone()?;
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || forward(&from, &to, Shaper::new(config), &stopped, &counters))?,
            );
        }
        Ok(Self {
            stop: Some(stop),
            threads,
            to_lab: counters.0,
            to_host: counters.1,
        })
    }

    /// Counts so far: host → lab, then lab → host.
    pub fn stats(&self) -> (DirectionStats, DirectionStats) {
        (self.to_lab.read(), self.to_host.read())
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One direction: read what arrives on `from`, release it to `to` when due, until `stopped`
/// reads end of file. Sleeps in `ppoll` (nanosecond timeout) until a packet arrives or the
/// next one is due, so an idle link costs no CPU and releases are late by the scheduler's
/// wake-up latency only (tens of microseconds), not by a poll's millisecond.
fn forward(
    from: &SyncDevice,
    to: &SyncDevice,
    mut shaper: Shaper,
    stopped: &UnixStream,
    counters: &Counters,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let timeout = shaper
            .next_due()
            .map(|due| TimeSpec::from_duration(due.saturating_duration_since(Instant::now())));
        let mut fds = [
            PollFd::new(from.as_fd(), PollFlags::POLLIN),
            PollFd::new(stopped.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::ppoll(&mut fds, timeout, None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!("the userspace WAN link stopped: ppoll: {e}");
                return;
            }
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        let readable = fds[0].any().unwrap_or(false);
        if readable {
            for _ in 0..READ_BATCH {
                match from.recv(&mut buf) {
                    Ok(n) => {
                        let packet = buf.get(..n).unwrap_or_default().to_vec();
                        if let Verdict::QueueFull = shaper.offer(Instant::now(), packet) {
                            tracing::debug!("the userspace WAN link's queue is full: dropped");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!("the userspace WAN link stopped: reading a TUN: {e}");
                        return;
                    }
                }
            }
        }
        let now = Instant::now();
        while let Some(due) = shaper.next_due().filter(|due| *due <= now) {
            let Some(packet) = shaper.pop_due(now) else {
                break;
            };
            let late = u64::try_from(now.duration_since(due).as_micros()).unwrap_or(u64::MAX);
            counters.late_us.fetch_add(late, Ordering::Relaxed);
            if let Err(e) = to.send(&packet) {
                // A packet the stack refuses is lost, as on a wire; TCP recovers.
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("the userspace WAN link could not deliver a packet: {e}");
            }
        }
        counters.publish(shaper.stats());
    }
}
