//! The create log: one sequential append and one fsync per group of creates.
//!
//! Why it exists: redb is a copy-on-write B-tree, so a durable commit writes every page it
//! touched, and generated codes are random, so each create touches a leaf of its own.
//! Flushing those scattered pages is what a commit waits for: on the machines of
//! docs/benchmarks.md, 39 scattered 4 KiB pages take 3.5 ms to fsync, a 16 KiB append
//! 0.3 ms. A group of creates is therefore made durable the way databases do it, with a
//! write-ahead log: the group's records are appended here and fsynced (one small
//! sequential write), then applied to the tree with a non-durable commit
//! (`Durability::None`: visible, not yet flushed). Every few MiB of log, a *checkpoint*
//! (an ordinary durable commit) flushes the tree's accumulated pages once for thousands of
//! creates, and the log starts over.
//!
//! Crash safety rests on one number, the log sequence number (LSN): each group gets the
//! next one, and the tree stores the highest it contains (in the same commit as the
//! links). After a crash the tree is back at its last durable commit, with its LSN; the
//! groups in the log after that LSN are applied again, the rest skipped. A group whose
//! append was torn by the crash fails its checksum and ends the log: it was never
//! acknowledged. Deletes and statistics commit durably as before; being durable, they
//! also flush the earlier non-durable commits, which only raises the stored LSN.
//!
//! Record format (little-endian): `len: u32`, `checksum: [u8; 8]` (BLAKE3 of the
//! payload, truncated), payload = `lsn: u64`, `count: u32`, then per link
//! `code_len: u8`, `code`, `record_len: u32`, `record` (the [`shortener_core::record`] bytes).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use shortener_core::ShortCode;

/// A link as the log keeps it: its code and its encoded record.
pub(super) type Entry = (ShortCode, Vec<u8>);

/// One group read back from the log.
pub(super) struct Group {
    /// The group's sequence number.
    pub lsn: u64,
    /// The links it inserted.
    pub links: Vec<Entry>,
}

/// The open log file, positioned at its end.
pub(super) struct Wal {
    file: File,
    len: u64,
}

/// Bytes before the payload: length and checksum.
const HEADER: usize = 4 + 8;

impl Wal {
    /// The log's path for the database file at `db`: next to it, `.wal` appended.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".wal");
        PathBuf::from(name)
    }

    /// Opens (or creates) the log at `path` and reads every complete group in it, in
    /// order. A torn or corrupt tail (a crash during an append) ends the log and is cut
    /// off, so the next append follows the last good group.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<Group>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut groups = Vec::new();
        let mut at = 0;
        while let Some((group, next)) = decode(&bytes, at) {
            groups.push(group);
            at = next;
        }
        if at != bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - at,
                "create log ends in a torn record (a crash during an unacknowledged append); cut off"
            );
            file.set_len(at as u64)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(at as u64))?;
        Ok((
            Self {
                file,
                len: at as u64,
            },
            groups,
        ))
    }

    /// Appends one group and waits until it is on disk.
    pub fn append(&mut self, lsn: u64, links: &[&Entry]) -> io::Result<()> {
        let record = encode(lsn, links)?;
        let result = self
            .file
            .write_all(&record)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = result {
            // Leave no half-written group for the next append to follow.
            self.truncate(self.len)?;
            return Err(error);
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Takes back everything after the first `len` bytes (a group whose commit failed).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        self.file.sync_data()?;
        self.len = len;
        Ok(())
    }

    /// Empties the log, once the tree holds everything in it durably.
    pub fn reset(&mut self) -> io::Result<()> {
        self.truncate(0)
    }

    /// The log's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let hash = blake3::hash(payload);
    let mut sum = [0; 8];
    sum.copy_from_slice(&hash.as_bytes()[..8]);
    sum
}

fn too_long(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} too long for the create log"),
    )
}

fn encode(lsn: u64, links: &[&Entry]) -> io::Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(12 + links.len() * 128);
    payload.extend_from_slice(&lsn.to_le_bytes());
    let count = u32::try_from(links.len()).map_err(|_| too_long("group"))?;
    payload.extend_from_slice(&count.to_le_bytes());
    for (code, record) in links {
        let code_len = u8::try_from(code.as_str().len()).map_err(|_| too_long("code"))?;
        payload.push(code_len);
        payload.extend_from_slice(code.as_str().as_bytes());
        let record_len = u32::try_from(record.len()).map_err(|_| too_long("record"))?;
        payload.extend_from_slice(&record_len.to_le_bytes());
        payload.extend_from_slice(record);
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_long("group"))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The group starting at `at`, and where the next one starts; `None` at the end of the
/// log or at a torn or corrupt record.
fn decode(bytes: &[u8], at: usize) -> Option<(Group, usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    if header[4..] != checksum(payload) {
        return None;
    }
    let mut reader = Reader(payload);
    let lsn = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
    let count = u32::from_le_bytes(reader.take(4)?.try_into().ok()?);
    let mut links = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let code_len = usize::from(*reader.take(1)?.first()?);
        let code = ShortCode::parse(std::str::from_utf8(reader.take(code_len)?).ok()?).ok()?;
        let record_len = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
        links.push((code, reader.take(record_len)?.to_vec()));
    }
    Some((Group { lsn, links }, at + HEADER + len))
}

/// Reads a payload front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: &str) -> Entry {
        (
            ShortCode::parse(code).expect("code"),
            code.as_bytes().repeat(3),
        )
    }

    #[test]
    fn groups_read_back_in_order_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("links.redb.wal");
        let (a, b, c) = (entry("aaa"), entry("bbb"), entry("ccc"));
        {
            let (mut wal, groups) = Wal::open(&path).expect("open");
            assert!(groups.is_empty());
            wal.append(7, &[&a, &b]).expect("append");
            wal.append(8, &[&c]).expect("append");
        }
        let good = std::fs::metadata(&path).expect("stat").len();
        // A crash in the middle of a third append: half a record at the end.
        let torn = encode(9, &[&a]).expect("encode");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&torn[..torn.len() / 2]).expect("write");
        drop(file);

        let (mut wal, groups) = Wal::open(&path).expect("reopen");
        let read: Vec<(u64, Vec<Entry>)> = groups.into_iter().map(|g| (g.lsn, g.links)).collect();
        assert_eq!(read, vec![(7, vec![a.clone(), b]), (8, vec![c])]);
        assert_eq!(wal.len(), good, "the torn tail is cut off");
        wal.append(9, &[&a]).expect("append after the cut");
        let (wal, groups) = Wal::open(&path).expect("reopen");
        assert_eq!(groups.iter().map(|g| g.lsn).collect::<Vec<_>>(), [7, 8, 9]);
        drop(wal);
    }

    #[test]
    fn a_flipped_byte_ends_the_log_and_reset_empties_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).expect("open");
        wal.append(1, &[&entry("one")]).expect("append");
        wal.append(2, &[&entry("two")]).expect("append");
        drop(wal);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let (mut wal, groups) = Wal::open(&path).expect("reopen");
        assert_eq!(groups.iter().map(|g| g.lsn).collect::<Vec<_>>(), [1]);
        wal.reset().expect("reset");
        assert_eq!(wal.len(), 0);
        let (_, groups) = Wal::open(&path).expect("reopen");
        assert!(groups.is_empty());
    }
}
