//! A copy-on-write view of a vault file for reading one that was not closed cleanly.
//!
//! redb refuses to open a file left by a crash read-only (`RepairAborted`): it must first
//! repair it, which writes. Opening must not write before the passphrase is proven (a
//! wrong passphrase leaves the file byte-for-byte unchanged, SPEC §4), so the header of
//! such a file is read through this backend: reads come from the file, redb's repair
//! writes land in memory (in 4 KiB blocks, only those it touches) and are thrown away.
//! Once the passphrase unwraps the keyring the file is opened for real and redb repairs
//! it on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

const BLOCK: u64 = 4096;

#[derive(Debug)]
pub struct Overlay {
    file: File,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The length redb sees.
    len: u64,
    /// Bytes of the file at or beyond this offset are not visible (the view was shrunk).
    base_len: u64,
    blocks: HashMap<u64, Box<[u8]>>,
}

impl Overlay {
    pub fn new(file: File) -> io::Result<Overlay> {
        let len = file.metadata()?.len();
        Ok(Overlay {
            file,
            state: Mutex::new(State {
                len,
                base_len: len,
                blocks: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's bytes of block `b` as this view saw them before any write.
    fn base_block(&self, st: &State, b: u64) -> io::Result<Box<[u8]>> {
        let mut buf = vec![0u8; BLOCK as usize].into_boxed_slice();
        let start = b * BLOCK;
        if start < st.base_len {
            let n = (st.base_len - start).min(BLOCK) as usize;
            self.file.read_exact_at(&mut buf[..n], start)?;
        }
        Ok(buf)
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "read beyond the end of the file",
    )
}

impl redb::StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let st = self.lock();
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
                        self.file.read_exact_at(&mut dst[..from_file], pos)?;
                    }
                    dst[from_file..].fill(0);
                }
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.lock();
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
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(out_of_range)?;
        let mut pos = offset;
        while pos < end {
            let b = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - pos % BLOCK).min(end - pos)) as usize;
            if !st.blocks.contains_key(&b) {
                let fresh = self.base_block(&st, b)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &original).unwrap();
        let o = Overlay::new(File::open(&p).unwrap()).unwrap();
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
        assert_eq!(
            std::fs::read(&p).unwrap(),
            original,
            "the file is untouched"
        );
    }
}
