//! An on-disk queue of publications the hub has not accepted yet, for a publisher that must not
//! lose any while the hub is down and must deliver each once, in order, when it is back.
//!
//! One file of JSON lines, appended to and fsynced before a publication is first sent:
//! `{"entry":{"publication":…,"end":…}}` for a publication (its idempotency key inside, so a
//! retry after a restart is recognised by the hub), `{"done":"KEY"}` once the hub accepted it,
//! and `{"position":…}` first after a compaction. `end` and `position` are where the source the
//! publications come from (a followed log file) had been read to, so a restarted publisher
//! resumes reading where the spool stands. A torn last line (a crash mid-write) is dropped on
//! open: its publication had not been sent yet.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::notification::Publication;

/// Where a followed file had been read to: its inode (a rotated file is a new one) and the
/// byte offset after the last line taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// The file's inode number.
    pub inode: u64,
    /// Bytes read.
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Record {
    Position(FilePosition),
    Entry {
        publication: Publication,
        end: Option<FilePosition>,
    },
    Done(String),
}

/// The spool is at its size limit: the publication was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the spool holds its limit of {limit} notifications; raise --spool-max or bring the hub back"
)]
pub struct SpoolFull {
    /// The limit.
    pub limit: usize,
}

/// A spool as opened: the spool, and what was dropped from a damaged file.
#[derive(Debug)]
pub struct SpoolOpened {
    /// The spool.
    pub spool: Spool,
    /// Lines of the file that could not be read (a torn write, damage), skipped.
    pub skipped_lines: usize,
}

/// Publications waiting for the hub, oldest first. See the module docs for the file format.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    pending: VecDeque<Publication>,
    position: Option<FilePosition>,
    done_records: usize,
    max_entries: usize,
}

impl Spool {
    /// Opens (or creates, with its directory, mode 0600) the spool at `path`, holding at most
    /// `max_entries` publications.
    pub fn open(path: &Path, max_entries: usize) -> io::Result<SpoolOpened> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut pending = VecDeque::new();
        let mut position = None;
        let mut done_records = 0;
        let mut skipped_lines = 0;
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Record>(&line) {
                        Ok(Record::Position(at)) => position = Some(at),
                        Ok(Record::Entry { publication, end }) => {
                            if end.is_some() {
                                position = end;
                            }
                            pending.push_back(publication);
                        }
                        Ok(Record::Done(key)) => {
                            done_records += 1;
                            pending.retain(|p| p.idempotency_key.as_deref() != Some(&key));
                        }
                        Err(_) => skipped_lines += 1,
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let mut spool = Self {
            path: path.to_owned(),
            file: append_file(path)?,
            pending,
            position,
            done_records,
            max_entries,
        };
        if skipped_lines > 0 || done_records > 0 {
            // Start from a clean file: no torn line for the next append to follow.
            spool.compact()?;
        }
        Ok(SpoolOpened {
            spool,
            skipped_lines,
        })
    }

    /// A file name for the spool of publications read from `source`: its name, for people,
    /// and a digest of its whole path, so two followed files never share a spool.
    pub fn file_name_for(source: &Path) -> String {
        use std::os::unix::ffi::OsStrExt as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, source.as_os_str().as_bytes());
        let short: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name: String = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        format!("{name}-{short}.jsonl")
    }

    /// The spool's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Publications waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest publication waiting.
    pub fn front(&self) -> Option<&Publication> {
        self.pending.front()
    }

    /// Where the source had been read to when the last publication was spooled.
    pub fn position(&self) -> Option<FilePosition> {
        self.position
    }

    /// Appends `publication` (which must carry an idempotency key) and fsyncs, recording that
    /// the source has been read up to `end`. Refused when the spool is full.
    pub fn push(
        &mut self,
        publication: Publication,
        end: Option<FilePosition>,
    ) -> Result<(), PushError> {
        if self.pending.len() >= self.max_entries {
            return Err(PushError::Full(SpoolFull {
                limit: self.max_entries,
            }));
        }
        let record = Record::Entry { publication, end };
        self.append(&record)?;
        if let Record::Entry { publication, end } = record {
            if end.is_some() {
                self.position = end;
            }
            self.pending.push_back(publication);
        }
        Ok(())
    }

    /// Records that the oldest publication was accepted by the hub, and removes it.
    pub fn pop_front(&mut self) -> io::Result<()> {
        let Some(front) = self.pending.front() else {
            return Ok(());
        };
        let key = front.idempotency_key.clone().unwrap_or_default();
        self.append(&Record::Done(key))?;
        self.pending.pop_front();
        self.done_records += 1;
        // Rewriting costs the whole file: do it when most records are done ones.
        if self.pending.is_empty() || self.done_records >= 1024.max(self.pending.len()) {
            self.compact()?;
        }
        Ok(())
    }

    /// Records a source position when the spool is skipped (a line dropped, a rotation), so a
    /// restart does not read that far again.
    pub fn set_position(&mut self, position: FilePosition) -> io::Result<()> {
        self.append(&Record::Position(position))?;
        self.position = Some(position);
        Ok(())
    }

    fn append(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Rewrites the file with only what is pending (temporary file, fsync, rename, fsync of the
    /// directory), so the spool is never half-written.
    fn compact(&mut self) -> io::Result<()> {
        let temporary = self.path.with_extension("tmp");
        {
            let mut out = io::BufWriter::new(private_file(&temporary, true)?);
            let mut write = |record: &Record| -> io::Result<()> {
                serde_json::to_writer(&mut out, record).map_err(io::Error::other)?;
                out.write_all(b"\n")
            };
            if let Some(position) = self.position {
                write(&Record::Position(position))?;
            }
            for publication in &self.pending {
                write(&Record::Entry {
                    publication: publication.clone(),
                    end: None,
                })?;
            }
            out.into_inner()
                .map_err(|err| err.into_error())?
                .sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = append_file(&self.path)?;
        self.done_records = 0;
        Ok(())
    }
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// At the limit.
    #[error(transparent)]
    Full(SpoolFull),
    /// Writing or syncing the file failed.
    #[error("writing the spool failed: {0}")]
    Io(#[from] io::Error),
}

fn append_file(path: &Path) -> io::Result<File> {
    private_file(path, false)
}

fn private_file(path: &Path, truncate: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = OpenOptions::new();
    options.create(true).mode(0o600);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(body: &str) -> Publication {
        Publication {
            channel: "ops".parse().expect("channel"),
            level: crate::notification::Level::Info,
            title: String::new(),
            body: body.to_owned(),
            data: None,
            idempotency_key: Some(format!("key-{body}")),
        }
    }

    fn at(offset: u64) -> Option<FilePosition> {
        Some(FilePosition { inode: 7, offset })
    }

    #[test]
    fn survives_reopening_in_order_without_what_was_delivered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spool/app.jsonl");
        let mut spool = Spool::open(&path, 10).expect("open").spool;
        for (n, body) in ["a", "b", "c"].into_iter().enumerate() {
            spool
                .push(publication(body), at(n as u64 + 1))
                .expect("push");
        }
        spool.pop_front().expect("a delivered");
        drop(spool);
        // a torn last line, as a crash mid-append leaves
        let mut file = OpenOptions::new().append(true).open(&path).expect("file");
        file.write_all(br#"{"entry":{"publica"#).expect("torn");
        drop(file);
        let opened = Spool::open(&path, 10).expect("reopen");
        assert_eq!(opened.skipped_lines, 1);
        let mut spool = opened.spool;
        assert_eq!(spool.position(), at(3));
        let bodies: Vec<_> = spool.pending.iter().map(|p| p.body.clone()).collect();
        assert_eq!(bodies, ["b", "c"]);
        assert_eq!(
            spool.front().and_then(|p| p.idempotency_key.clone()),
            Some("key-b".to_owned())
        );
        spool.pop_front().expect("b");
        spool.pop_front().expect("c");
        assert!(spool.is_empty());
        drop(spool);
        let spool = Spool::open(&path, 10).expect("reopen").spool;
        assert!(spool.is_empty());
        assert_eq!(spool.position(), at(3), "the position outlives the entries");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn is_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::open(&dir.path().join("s"), 2).expect("open").spool;
        spool.push(publication("a"), None).expect("a");
        spool.push(publication("b"), None).expect("b");
        assert!(matches!(
            spool.push(publication("c"), None),
            Err(PushError::Full(SpoolFull { limit: 2 }))
        ));
        spool.pop_front().expect("a");
        spool.push(publication("c"), None).expect("room again");
    }
}
