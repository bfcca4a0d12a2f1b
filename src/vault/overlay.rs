//! The storage backend under every vault session: the file, seen through a layer that
//! decides when, and whether, redb's writes reach it.
//!
//! redb writes on open and on close even when nothing changes: a writable open rewrites the
//! header (its "recovery required" flag) and, with an integrity check, records a repair
//! commit; a close records the allocator state and a clean-shutdown header. That is the
//! 6–7 KB an ordinary command used to leave behind, whatever it then did. Through this layer:
//!
//! - `Mode::Memory`: reads come from the file, writes land in memory (in 4 KiB blocks, only
//!   those touched) and are thrown away. Nothing a session does reaches the file. Used by
//!   read-only sessions, `doctor`, reading the header of a file left by a crash, and (with
//!   no file beneath) a vault that lives only in memory.
//! - `Mode::Deferred`: like `Memory` until the vault commits a change of its own
//!   (`Control::arm`, called by `Tx::commit` just before redb's commit). At that commit's
//!   first sync, the buffered writes and the commit's own go to the file together (pages
//!   first, the header block last) under that one sync, and everything after goes straight
//!   to the file. The buffered writes are only redb's open-time bookkeeping (the recovery
//!   flag, the integrity check's repair commit of the same roots), so a crash in the middle
//!   leaves what a crash in the middle of that commit would; and arming costs no extra sync,
//!   which keeps the window between a provider's rotation and its commit as it was. A
//!   session that refuses before committing leaves the file untouched.
//! - `Mode::Passthrough`: straight to the file (a vault just created by `init`).
//!
//! `Control::freeze` makes every later write, resize and sync fail: a session that met
//! damaged data (a panic in redb) can then write nothing more, not even at close.
//!
//! Locks: with `locks`, redb's byte-range locks are passed to the file's `FileBackend`, so
//! a session excludes a daemon (and the other way round) by redb's own protocol. Without
//! (a file this user may only read), the backend reports locking unsupported, which redb
//! accepts in its default single-writer mode.

use crate::sync::LockExt;
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const BLOCK: u64 = 4096;

/// When redb's writes reach the file; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Memory,
    Deferred,
    Passthrough,
}

/// The backend handed to redb.
#[derive(Debug)]
pub struct Overlay(Arc<Inner>);

/// The vault's handle on the same backend: arm it before a commit, freeze it after damage.
#[derive(Debug, Clone)]
pub struct Control(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// `None`: nothing beneath; the view starts empty (a vault in memory).
    file: Option<FileBackend>,
    locks: bool,
    /// Set once everything goes straight to the file (read without taking `state`).
    passthrough: AtomicBool,
    frozen: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// The length redb sees.
    len: u64,
    /// Bytes of the file at or beyond this offset are not visible (the view was shrunk).
    base_len: u64,
    blocks: BTreeMap<u64, Box<[u8]>>,
    /// A deferred view whose next sync writes the buffer out (see `Control::arm`).
    armed: bool,
}

impl Overlay {
    /// A view of `file` (or of nothing) in `mode`. `locks` passes redb's locks to the file.
    pub fn new(
        file: Option<FileBackend>,
        mode: Mode,
        locks: bool,
    ) -> io::Result<(Overlay, Control)> {
        let len = match &file {
            Some(f) => f.len()?,
            None => 0,
        };
        if mode != Mode::Memory && file.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a memory view can have no file beneath it",
            ));
        }
        let inner = Arc::new(Inner {
            locks: locks && file.is_some(),
            file,
            passthrough: AtomicBool::new(mode == Mode::Passthrough),
            frozen: AtomicBool::new(false),
            state: Mutex::new(State {
                mode,
                len,
                base_len: len,
                blocks: BTreeMap::new(),
                armed: false,
            }),
        });
        Ok((Overlay(inner.clone()), Control(inner)))
    }
}

fn frozen_error() -> io::Error {
    io::Error::other("this vault session met damaged data and stopped writing")
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "read beyond the end of the file",
    )
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }

    fn file(&self) -> io::Result<&FileBackend> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("no file beneath this view"))
    }

    fn direct(&self) -> bool {
        self.passthrough.load(Ordering::Acquire)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.frozen.load(Ordering::Acquire) {
            return Err(frozen_error());
        }
        Ok(())
    }

    /// Block `b` as the file held it before this view wrote to it (zeros past `base_len`).
    fn base_block(&self, st: &State, b: u64) -> io::Result<Box<[u8]>> {
        let mut buf = vec![0u8; BLOCK as usize].into_boxed_slice();
        let start = b * BLOCK;
        if start < st.base_len {
            let n = (st.base_len - start).min(BLOCK) as usize;
            self.file()?.read(start, &mut buf[..n])?;
        }
        Ok(buf)
    }

    /// Writes the buffered view to the file (pages, then the header block), syncs once, and
    /// switches to passthrough. On failure the view is frozen: the file then holds part of
    /// what redb wrote before this sync, as after a crash in the middle of a commit.
    fn flush(&self, st: &mut State) -> io::Result<()> {
        let file = self.file()?;
        let result = (|| {
            if st.base_len < file.len()? {
                file.set_len(st.base_len)?;
            }
            if file.len()? != st.len {
                file.set_len(st.len)?;
            }
            let clip = |b: u64, block: &[u8]| -> usize {
                let visible = st.len.saturating_sub(b * BLOCK).min(BLOCK) as usize;
                visible.min(block.len())
            };
            for (b, block) in st.blocks.iter().filter(|(b, _)| **b != 0) {
                let n = clip(*b, block);
                if n > 0 {
                    file.write(b * BLOCK, &block[..n])?;
                }
            }
            if let Some(block) = st.blocks.get(&0) {
                let n = clip(0, block);
                if n > 0 {
                    file.write(0, &block[..n])?;
                }
            }
            file.sync_data()
        })();
        match result {
            Ok(()) => {
                st.blocks.clear();
                st.base_len = st.len;
                st.mode = Mode::Passthrough;
                self.passthrough.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.frozen.store(true, Ordering::Release);
                Err(e)
            }
        }
    }
}

impl Control {
    /// Called before the vault commits a change: a deferred view writes what it buffered,
    /// with the commit's writes, at the commit's first sync, and goes straight to the file
    /// from then on. A memory view stays in memory.
    pub fn arm(&self) -> io::Result<()> {
        self.0.check_writable()?;
        if self.0.direct() {
            return Ok(());
        }
        let mut st = self.0.lock();
        if st.mode == Mode::Deferred {
            st.armed = true;
        }
        Ok(())
    }

    /// No write, resize or sync reaches the file any more.
    pub fn freeze(&self) {
        self.0.frozen.store(true, Ordering::Release);
    }

    /// Whether anything this view buffered or wrote has reached the file.
    #[cfg(test)]
    pub fn wrote(&self) -> bool {
        self.0.direct()
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        if self.0.direct() {
            return self.0.file()?.len();
        }
        Ok(self.0.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if self.0.direct() {
            return self.0.file()?.read(offset, out);
        }
        let st = self.0.lock();
        if st.mode == Mode::Passthrough {
            drop(st);
            return self.0.file()?.read(offset, out);
        }
        let end = offset
            .checked_add(out.len() as u64)
            .ok_or_else(out_of_range)?;
        if end > st.len {
            return Err(out_of_range());
        }
        let mut pos = offset;
        while pos < end {
            let b = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - pos % BLOCK).min(end - pos)) as usize;
            let dst = &mut out[(pos - offset) as usize..(pos - offset) as usize + n];
            match st.blocks.get(&b) {
                Some(block) => dst.copy_from_slice(&block[within..within + n]),
                None => {
                    // Below base_len from the file, zeros above it.
                    let from_file = st.base_len.saturating_sub(pos).min(n as u64) as usize;
                    if from_file > 0 {
                        self.0.file()?.read(pos, &mut dst[..from_file])?;
                    }
                    dst[from_file..].fill(0);
                }
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.check_writable()?;
        if self.0.direct() {
            return self.0.file()?.set_len(len);
        }
        let mut st = self.0.lock();
        if st.mode == Mode::Passthrough {
            drop(st);
            return self.0.file()?.set_len(len);
        }
        if len < st.len {
            st.blocks.retain(|b, _| b * BLOCK < len);
            let last = len / BLOCK;
            if let Some(block) = st.blocks.get_mut(&last) {
                block[(len % BLOCK) as usize..].fill(0);
            }
            st.base_len = st.base_len.min(len);
        }
        st.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.check_writable()?;
        if self.0.direct() {
            return self.0.file()?.sync_data();
        }
        let mut st = self.0.lock();
        match st.mode {
            Mode::Deferred if st.armed => self.0.flush(&mut st),
            Mode::Passthrough => {
                drop(st);
                self.0.file()?.sync_data()
            }
            // Buffered writes have nowhere to be synced to until the view is armed.
            _ => Ok(()),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.check_writable()?;
        if self.0.direct() {
            return self.0.file()?.write(offset, data);
        }
        let mut st = self.0.lock();
        if st.mode == Mode::Passthrough {
            drop(st);
            return self.0.file()?.write(offset, data);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(out_of_range)?;
        let mut pos = offset;
        while pos < end {
            let b = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - pos % BLOCK).min(end - pos)) as usize;
            if !st.blocks.contains_key(&b) {
                let fresh = self.0.base_block(&st, b)?;
                st.blocks.insert(b, fresh);
            }
            let src = &data[(pos - offset) as usize..(pos - offset) as usize + n];
            if let Some(block) = st.blocks.get_mut(&b) {
                block[within..within + n].copy_from_slice(src);
            }
            pos += n as u64;
        }
        st.len = st.len.max(end);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        // Releases the locks; writes nothing.
        match &self.0.file {
            Some(f) => f.close(),
            None => Ok(()),
        }
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        match &self.0.file {
            Some(f) if self.0.locks => f.try_lock_range(start, end),
            _ => Err(BackendError::Unsupported),
        }
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        match &self.0.file {
            Some(f) if self.0.locks => f.try_lock_shared_range(start, end),
            _ => Err(BackendError::Unsupported),
        }
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        match &self.0.file {
            Some(f) if self.0.locks => f.lock_range(start, end),
            _ => Err(BackendError::Unsupported),
        }
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        match &self.0.file {
            Some(f) if self.0.locks => f.lock_shared_range(start, end),
            _ => Err(BackendError::Unsupported),
        }
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        match &self.0.file {
            Some(f) if self.0.locks => f.unlock_range(start, end),
            _ => Err(BackendError::Unsupported),
        }
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        match &self.0.file {
            Some(f) if self.0.locks => f.query_lock_range(start, end),
            _ => Err(BackendError::Unsupported),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn backend(p: &std::path::Path) -> FileBackend {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .unwrap();
        FileBackend::new(f).unwrap()
    }

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &original).unwrap();
        let (o, c) = Overlay::new(Some(backend(&p)), Mode::Memory, false).unwrap();
        o.write(4090, &[0xAA; 20]).unwrap();
        let mut buf = vec![0; 30];
        o.read(4085, &mut buf).unwrap();
        assert_eq!(&buf[..5], &original[4085..4090]);
        assert_eq!(&buf[5..25], &[0xAA; 20]);
        assert_eq!(&buf[25..], &original[4110..4115]);
        // growing past the end: zeros, then what was written
        o.set_len(20_000).unwrap();
        o.write(15_000, b"xyz").unwrap();
        let mut tail = vec![1; 10];
        o.read(14_995, &mut tail).unwrap();
        assert_eq!(&tail, &[0, 0, 0, 0, 0, b'x', b'y', b'z', 0, 0]);
        // shrinking hides the file's bytes beyond, growing again shows zeros
        o.set_len(5000).unwrap();
        o.set_len(9000).unwrap();
        let mut z = vec![1; 100];
        o.read(5000, &mut z).unwrap();
        assert!(z.iter().all(|b| *b == 0));
        assert!(o.read(8990, &mut [0; 20]).is_err());
        o.sync_data().unwrap();
        c.arm().unwrap();
        o.close().unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            original,
            "a memory view never writes the file"
        );
    }

    #[test]
    fn a_deferred_view_writes_only_at_a_sync_once_armed_and_then_exactly_its_view() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&p, &original).unwrap();
        let (o, c) = Overlay::new(Some(backend(&p)), Mode::Deferred, false).unwrap();
        o.write(10, b"header").unwrap();
        o.write(8000, b"page").unwrap();
        o.set_len(3 * 4096 + 7).unwrap();
        o.write(3 * 4096, b"tail").unwrap();
        o.sync_data().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), original, "nothing before arm");
        let mut view = vec![0u8; 3 * 4096 + 7];
        o.read(0, &mut view).unwrap();
        c.arm().unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            original,
            "nothing before the next sync"
        );
        o.sync_data().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), view, "the file is the view");
        assert!(c.wrote());
        // straight through from now on
        o.write(0, b"X").unwrap();
        assert_eq!(std::fs::read(&p).unwrap()[0], b'X');
    }

    #[test]
    fn a_frozen_view_refuses_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [7u8; 5000]).unwrap();
        let (o, c) = Overlay::new(Some(backend(&p)), Mode::Passthrough, false).unwrap();
        c.freeze();
        assert!(o.write(0, b"x").is_err());
        assert!(o.set_len(1).is_err());
        assert!(o.sync_data().is_err());
        assert!(c.arm().is_err());
        assert_eq!(std::fs::read(&p).unwrap(), vec![7u8; 5000]);
    }
}
