//! Watching a source directory for changes (inotify through notify), debounced so an editor's
//! save burst (write temp, fsync, rename, chmod) becomes one reconcile.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// The default quiet period that ends a burst of file events.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}")]
pub struct WatchError {
    path: String,
    #[source]
    source: notify::Error,
}

/// A debounced watcher of one directory tree.
pub struct DirWatcher {
    _watcher: RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl DirWatcher {
    pub fn new(dir: &Path) -> Result<DirWatcher, WatchError> {
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                // Reads do not change the desired state.
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|source| WatchError {
            path: dir.display().to_string(),
            source,
        })?;
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|source| WatchError {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(DirWatcher {
            _watcher: watcher,
            rx,
        })
    }

    /// Waits up to `timeout` for a change. When one comes, keeps absorbing events until
    /// `debounce` passes without any, and returns when the first event arrived.
    pub fn wait(&self, timeout: Duration, debounce: Duration) -> Option<Instant> {
        match self.rx.recv_timeout(timeout) {
            Ok(()) => {
                let first = Instant::now();
                while self.rx.recv_timeout(debounce).is_ok() {}
                Some(first)
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_burst_is_one_change_and_quiet_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let w = DirWatcher::new(dir.path()).unwrap();
        assert!(w.wait(Duration::from_millis(100), DEBOUNCE).is_none());
        let saved = Instant::now();
        for i in 0..5 {
            std::fs::write(dir.path().join(".a.yaml.swp"), format!("{i}")).unwrap();
        }
        std::fs::rename(dir.path().join(".a.yaml.swp"), dir.path().join("a.yaml")).unwrap();
        let first = w
            .wait(Duration::from_secs(5), DEBOUNCE)
            .expect("the save is seen");
        assert!(first.duration_since(saved) < Duration::from_millis(300));
        // The whole burst was absorbed: nothing is left to report.
        assert!(w.wait(Duration::from_millis(300), DEBOUNCE).is_none());
    }
}
