//! Reading the lines appended to a log file, like `tail -F`: from where a previous run stopped
//! (same inode), from the end on a first run, from the start after a rotation or truncation.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use protolab_hub::client::FilePosition;

/// Bytes read from the file per call at most, so one huge append cannot take all memory.
const READ_CHUNK: usize = 256 * 1024;
/// A line longer than this is cut and taken as it is (the hub refuses longer bodies anyway).
pub(crate) const MAX_LINE: usize = 4096;

/// A complete line and where the file has been read to once it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) text: String,
    pub(crate) end: FilePosition,
}

/// A followed file.
#[derive(Debug)]
pub(crate) struct Tail {
    path: PathBuf,
    open: Option<(File, u64)>,
    /// Bytes of the open file taken as lines (or skipped).
    offset: u64,
    /// Bytes read past `offset`, not yet a complete line.
    pending: Vec<u8>,
    resume: Option<FilePosition>,
    first_open: bool,
}

impl Tail {
    /// Follows `path`, resuming at `resume` if the file there is still the same one.
    pub(crate) fn new(path: PathBuf, resume: Option<FilePosition>) -> Self {
        Self {
            path,
            open: None,
            offset: 0,
            pending: Vec::new(),
            resume,
            first_open: true,
        }
    }

    /// Up to `max` new complete lines, and notes for the user (a rotation, a truncation).
    pub(crate) fn poll(&mut self, max: usize) -> io::Result<(Vec<Line>, Vec<String>)> {
        let mut notes = Vec::new();
        let mut lines = Vec::new();
        if self.open.is_none() && !self.reopen(&mut notes)? {
            return Ok((lines, notes));
        }
        loop {
            while lines.len() < max {
                let Some(line) = self.take_line() else { break };
                if !line.text.is_empty() {
                    lines.push(line);
                }
            }
            if lines.len() >= max {
                return Ok((lines, notes));
            }
            if self.read_more()? == 0 {
                break;
            }
        }
        // At the end of the open file: was it truncated, or replaced by a new one?
        let Some((file, inode)) = &self.open else {
            return Ok((lines, notes));
        };
        let inode = *inode;
        let read_to = self.offset + self.pending.len() as u64;
        if file.metadata()?.len() < read_to {
            notes.push(format!(
                "{} was truncated: reading it again from the start",
                self.path.display()
            ));
            self.seek_start()?;
        } else if std::fs::metadata(&self.path).is_ok_and(|meta| meta.ino() != inode) {
            notes.push(format!(
                "{} was rotated: reading the new file from the start",
                self.path.display()
            ));
            self.open = None;
            self.pending.clear();
            self.offset = 0;
        }
        Ok((lines, notes))
    }

    /// Opens the file; false if it does not exist (yet).
    fn reopen(&mut self, notes: &mut Vec<String>) -> io::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err),
        };
        let meta = file.metadata()?;
        let inode = meta.ino();
        let start = match self.resume.take() {
            Some(at) if at.inode == inode && at.offset <= meta.len() => {
                notes.push(format!(
                    "resuming {} at byte {}",
                    self.path.display(),
                    at.offset
                ));
                at.offset
            }
            Some(_) => {
                notes.push(format!(
                    "{} is another file than when notify last ran (rotated or truncated): reading it from the start",
                    self.path.display()
                ));
                0
            }
            None if self.first_open => {
                notes.push(format!(
                    "following {} from its end (byte {})",
                    self.path.display(),
                    meta.len()
                ));
                meta.len()
            }
            None => 0,
        };
        self.first_open = false;
        file.seek(SeekFrom::Start(start))?;
        self.open = Some((file, inode));
        self.offset = start;
        self.pending.clear();
        Ok(true)
    }

    fn seek_start(&mut self) -> io::Result<()> {
        if let Some((file, _)) = &mut self.open {
            file.seek(SeekFrom::Start(0))?;
        }
        self.offset = 0;
        self.pending.clear();
        Ok(())
    }

    fn read_more(&mut self) -> io::Result<usize> {
        let Some((file, _)) = &mut self.open else {
            return Ok(0);
        };
        let mut chunk = vec![0u8; READ_CHUNK];
        let n = file.read(&mut chunk)?;
        self.pending.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next complete line of `pending` (or a cut one past [`MAX_LINE`] with no newline).
    fn take_line(&mut self) -> Option<Line> {
        let inode = self.open.as_ref()?.1;
        let (line_len, consumed) = match self.pending.iter().position(|&b| b == b'\n') {
            Some(newline) => (newline, newline + 1),
            None if self.pending.len() > MAX_LINE => (MAX_LINE, MAX_LINE),
            None => return None,
        };
        let raw: Vec<u8> = self.pending.drain(..consumed).take(line_len).collect();
        self.offset += consumed as u64;
        let mut text = String::from_utf8_lossy(&raw)
            .trim_end_matches('\r')
            .to_owned();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Some(Line {
            text,
            end: FilePosition {
                inode,
                offset: self.offset,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn append(path: &std::path::Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open");
        file.write_all(text.as_bytes()).expect("write");
    }

    fn texts(tail: &mut Tail) -> Vec<String> {
        tail.poll(100)
            .expect("poll")
            .0
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn follows_appends_truncation_rotation_and_resumes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.log");
        append(&path, "old\n");
        let mut tail = Tail::new(path.clone(), None);
        assert!(texts(&mut tail).is_empty(), "a first run starts at the end");
        append(&path, "one\r\ntw");
        assert_eq!(texts(&mut tail), ["one"]);
        append(&path, "o\n\nthree\n");
        let (lines, _) = tail.poll(1).expect("poll");
        assert_eq!(lines[0].text, "two");
        let resume_at = lines[0].end;
        assert_eq!(texts(&mut tail), ["three"]);

        // a new run resumes after "two"
        let mut again = Tail::new(path.clone(), Some(resume_at));
        assert_eq!(texts(&mut again), ["three"]);

        // truncation (copytruncate)
        std::fs::write(&path, "").expect("truncate");
        assert!(texts(&mut tail).is_empty());
        append(&path, "after truncate\n");
        assert_eq!(texts(&mut tail), ["after truncate"]);

        // rotation: the old file's last lines, then the new file from its start
        append(&path, "last of old\n");
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rotate");
        append(&path, "first of new\n");
        assert_eq!(texts(&mut tail), ["last of old"]);
        assert_eq!(texts(&mut tail), ["first of new"]);

        let long = "x".repeat(MAX_LINE + 10);
        append(&path, &format!("{long}\n"));
        let lines = texts(&mut tail);
        assert_eq!(
            lines.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE]
        );
    }
}
