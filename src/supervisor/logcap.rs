//! A log file with a size cap: when a write would pass the cap, the file is moved to `<name>.1`
//! (replacing the previous one) and a new file is started. At most twice the cap is on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default cap for `agent.log`.
pub const AGENT_LOG_CAP: u64 = 16 << 20;

#[derive(Debug)]
pub struct CappedLog {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

impl CappedLog {
    pub fn open(path: &Path, cap: u64) -> io::Result<CappedLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(CappedLog {
            path: path.to_path_buf(),
            file,
            size,
            cap: cap.max(1024),
        })
    }

    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.size >= self.cap {
                self.rotate()?;
            }
            let room = usize::try_from(self.cap - self.size).unwrap_or(usize::MAX);
            let n = room.min(data.len());
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let old = self.path.with_extension("log.1");
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatty_writer_stays_under_twice_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.log");
        let mut log = CappedLog::open(&p, 1024).unwrap();
        for _ in 0..100 {
            log.write(&[b'x'; 100]).unwrap();
        }
        let a = std::fs::metadata(&p).unwrap().len();
        let b = std::fs::metadata(dir.path().join("agent.log.1"))
            .unwrap()
            .len();
        assert!(a <= 1024 && b == 1024, "{a} {b}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
