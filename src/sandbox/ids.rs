//! Per-sandbox host id ranges, allocated once per sandbox name and recorded in
//! `run/id-ranges.json` (under a lock), so a sandbox keeps its uid across restarts (its state
//! dir stays its own) and no two sandboxes ever share one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::home::{FileLock, Home, HomeError};

use super::spec::{IdRange, HOST_ID_BASE, IDS_PER_SANDBOX};

#[derive(Debug, thiserror::Error)]
pub enum IdsError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{path} is damaged; fix or remove it (sandboxes keep their state, but their uids are re-assigned)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no host id range is left for another sandbox")]
    Exhausted,
}

/// The highest range index (keeps host ids below 2^31).
const MAX_INDEX: u32 = (i32::MAX as u32 - HOST_ID_BASE) / IDS_PER_SANDBOX - 1;

/// Returns the sandbox's range, allocating the lowest free one on first use.
pub fn allocate(home: &Home, name: &str) -> Result<IdRange, IdsError> {
    let run = home.root().join("run");
    crate::home::create_dir_private(&run)?;
    let path = run.join("id-ranges.json");
    // Fast path, no lock: the table is only ever replaced atomically, and entries never change.
    if let Ok(b) = std::fs::read(&path) {
        if let Some(i) = serde_json::from_slice::<BTreeMap<String, u32>>(&b)
            .ok()
            .and_then(|t| t.get(name).copied())
        {
            return Ok(IdRange::nth(i));
        }
    }
    let _lock = FileLock::acquire(
        &run.join("id-ranges.lock"),
        "allocating a sandbox uid range",
        Duration::from_secs(10),
    )?;
    let mut table: BTreeMap<String, u32> = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| IdsError::Corrupt {
            path: path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(HomeError::Io { path, source: e }.into()),
    };
    if let Some(i) = table.get(name) {
        return Ok(IdRange::nth(*i));
    }
    let index = next_free(&table).ok_or(IdsError::Exhausted)?;
    table.insert(name.to_string(), index);
    let json = serde_json::to_vec_pretty(&table).map_err(|source| IdsError::Corrupt {
        path: path.clone(),
        source,
    })?;
    crate::home::write_atomic(&path, &json, 0o600)?;
    Ok(IdRange::nth(index))
}

/// The lowest index no sandbox holds. Pure.
pub fn next_free(table: &BTreeMap<String, u32>) -> Option<u32> {
    let mut used: Vec<u32> = table.values().copied().collect();
    used.sort_unstable();
    let mut want = 0;
    for u in used {
        if u == want {
            want += 1;
        } else if u > want {
            break;
        }
    }
    (want <= MAX_INDEX).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_index() {
        let t = |v: &[u32]| {
            v.iter()
                .enumerate()
                .map(|(i, x)| (format!("s{i}"), *x))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(next_free(&t(&[])), Some(0));
        assert_eq!(next_free(&t(&[0, 1, 3])), Some(2));
        assert_eq!(next_free(&t(&[1])), Some(0));
    }

    #[test]
    fn allocation_is_stable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let a = allocate(&home, "a").unwrap();
        let b = allocate(&home, "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(allocate(&home, "a").unwrap(), a);
        assert!(a.host_base >= 1 << 20 && b.host_base >= 1 << 20);
        assert!(
            a.host_base + a.count <= b.host_base || b.host_base + b.count <= a.host_base,
            "ranges do not overlap"
        );
    }
}
