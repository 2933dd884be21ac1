//! The agent's ids inside the sandbox, and the resource limits (cgroup, rlimits, tmpfs size).

use crate::blueprint::types::{defaults, Blueprint};
use crate::sandbox::cgroups::CgroupLimits;

use super::{field_err, IdRange, Rlimits, SpecError, MIN_MEMORY};

/// The limits of one sandbox, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cgroup: CgroupLimits,
    pub rlimits: Rlimits,
    /// Size of `/tmp` and `/dev/shm` each.
    pub tmp_size: u64,
}

/// The agent's uid and gid inside the sandbox: non-zero and inside the mapped range.
pub fn agent_ids(bp: &Blueprint, ids: IdRange) -> Result<(u32, u32), SpecError> {
    let uid = bp.sandbox.uid.unwrap_or(defaults::AGENT_UID);
    let gid = bp.sandbox.gid.unwrap_or(defaults::AGENT_GID);
    for (field, id, what) in [("sandbox.uid", uid, "uid"), ("sandbox.gid", gid, "gid")] {
        if id == 0 || id >= ids.count {
            return Err(field_err(
                field,
                format!(
                    "{id} is not allowed: use a non-zero {what} below {}",
                    ids.count
                ),
            ));
        }
    }
    Ok((uid, gid))
}

/// `resources` and the `sandbox` limits, in the order they are checked.
pub fn limits(bp: &Blueprint) -> Result<Limits, SpecError> {
    let memory = memory(bp)?;
    let pids = pids(bp)?;
    let tmp_size = tmp_size(bp)?;
    let nofile = nofile(bp)?;
    Ok(Limits {
        cgroup: CgroupLimits {
            cpu_millis: bp.resources.cpu.map(|c| c.millicores()),
            memory,
            pids,
        },
        rlimits: Rlimits { core: 0, nofile },
        tmp_size,
    })
}

fn memory(bp: &Blueprint) -> Result<Option<u64>, SpecError> {
    let Some(memory) = bp.resources.memory else {
        return Ok(None);
    };
    if memory.bytes() < MIN_MEMORY {
        return Err(field_err(
            "resources.memory",
            format!(
                "{memory} is below the {} MiB a sandbox needs at least",
                MIN_MEMORY >> 20
            ),
        ));
    }
    Ok(Some(memory.bytes()))
}

fn pids(bp: &Blueprint) -> Result<u32, SpecError> {
    let pids = bp.resources.pids.unwrap_or(defaults::PIDS);
    if pids < 4 {
        return Err(field_err(
            "resources.pids",
            format!("{pids} is too few: the sandbox's init and the agent need at least 4"),
        ));
    }
    Ok(pids)
}

fn tmp_size(bp: &Blueprint) -> Result<u64, SpecError> {
    let tmp_size = bp
        .sandbox
        .tmp_size
        .map(|s| s.bytes())
        .unwrap_or(defaults::TMP_SIZE);
    if tmp_size < 4096 {
        return Err(field_err("sandbox.tmpSize", "must be at least 4Ki"));
    }
    Ok(tmp_size)
}

fn nofile(bp: &Blueprint) -> Result<u64, SpecError> {
    let nofile = bp.sandbox.nofile.unwrap_or(defaults::NOFILE);
    if !(16..=1 << 20).contains(&nofile) {
        return Err(field_err(
            "sandbox.nofile",
            format!("{nofile} is out of range: use 16 to 1048576"),
        ));
    }
    Ok(nofile)
}
