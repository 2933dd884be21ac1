//! Blueprint -> [`SandboxSpec`]: every mount, file, environment variable, id map, limit and the
//! command of one sandbox, computed by a pure function ([`build`]) so it can be reviewed and
//! tested without root. The effectful side ([`mod@super::spawn`]) only carries the spec out.
//!
//! The host is consulted only through [`HostView`] (which system directories exist and which
//! are symlinks), probed once by [`HostView::probe`]; `instance::check_host` then verifies,
//! before anything is created, that every path the spec needs exists (bad input fails naming
//! the blueprint field, nothing half-built is left behind).

//!
//! [`build`] runs one step per part of the spec, each in its own file: `limits.rs` (the agent's
//! ids and the resource limits), `command.rs` (argv and workdir), `mounts.rs` (the root's
//! layout), `env.rs` (the environment), `etc.rs` (the generated files in `/etc`); `checks.rs`
//! holds the checks of single values they share ([`CheckError`]).

mod checks;
mod command;
mod env;
mod etc;
mod host;
mod limits;
mod mounts;
mod resolve;
mod types;

pub use checks::CheckError;
pub use host::{system_root, HostEntry, HostView};
pub use types::{
    AgentLaunch, FileSpec, IdRange, MountKind, MountSpec, Rlimits, SandboxSpec, SpecInput,
};

/// Where the nemoclaw binary is mounted (read-only) inside every sandbox.
pub const NEMOCLAW_BIN: &str = "/opt/nemoclaw/bin/nemoclaw";
/// Where an agent plugin's install directory (`cache/agents/<plugin>/<version>`) is mounted:
/// read-write in its setup sandbox, read-only in every agent sandbox, at the same path so
/// absolute paths written by the install (a venv's shebangs) stay true.
pub const AGENT_DIR: &str = "/opt/nemoclaw/agent";
/// Where the host state dir `state/<name>` is mounted read-write.
pub const STATE_PATH: &str = "/workspace/state";
/// First host uid/gid handed to sandboxes (2^20), far above any host user.
pub const HOST_ID_BASE: u32 = 1 << 20;
/// Ids per sandbox: inside ids 0..65536 map to `base..base+65536` on the host.
pub const IDS_PER_SANDBOX: u32 = 65536;
/// Smallest memory limit a sandbox may have (its init and a shell need a few MiB).
pub const MIN_MEMORY: u64 = 16 << 20;
/// Size of the read-only root tmpfs (holds /etc and the mount points only).
pub const ROOT_TMPFS_SIZE: u64 = 1 << 20;
/// PATH inside the sandbox.
pub const SANDBOX_PATH: &str =
    "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:/opt/nemoclaw/bin";

/// The top-level system directories taken from the host (or from `filesystem.rootfs`).
pub const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A blueprint field holds a value the sandbox cannot use.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// A blueprint field failed a check; `reason` ([`CheckError`]) says which (it is part of this
    /// error's message, not a separate source: it is the whole explanation).
    #[error("{field}: {reason}")]
    Check { field: String, reason: CheckError },
}

impl SpecError {
    /// The field `field` failed a check.
    pub(crate) fn check(field: impl Into<String>, reason: CheckError) -> SpecError {
        SpecError::Check {
            field: field.into(),
            reason,
        }
    }
}

pub(crate) fn field_err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// Builds the sandbox spec from the blueprint. Pure: no file system access. The steps run in
/// the order their fields are checked, so the first bad field is the one reported.
pub fn build(input: &SpecInput<'_>) -> Result<SandboxSpec, SpecError> {
    let bp = input.blueprint;
    let name = bp.metadata.name.clone();
    checks::check_name(&name).map_err(|reason| SpecError::check("metadata.name", reason))?;
    let (uid, gid) = limits::agent_ids(bp, input.ids)?;
    let limits = limits::limits(bp)?;
    let workdir = command::workdir(bp)?;
    let command = command::command(bp, input.command.as_ref(), input.agent)?;
    let layout = mounts::layout(input, limits.tmp_size)?;
    let env = env::environment(bp, &name, &input.secrets, input.agent)?;
    command::check_argv(&command.argv)?;
    check_seccomp_deny(&bp.sandbox.seccomp.deny)?;
    Ok(SandboxSpec {
        hostname: name.clone(),
        files: etc::etc_files(&name, uid, gid),
        name,
        root_dir: input.root_dir.to_path_buf(),
        dirs: layout.dirs,
        symlinks: layout.symlinks,
        mounts: layout.mounts,
        uid_map: input.ids,
        gid_map: input.ids,
        uid,
        gid,
        env,
        argv: command.argv,
        workdir,
        rlimits: limits.rlimits,
        cgroup: limits.cgroup,
        seccomp_deny: bp.sandbox.seccomp.deny.clone(),
        state_dir: input.state_dir.to_path_buf(),
        command_origin: command.origin.to_string(),
    })
}

/// `sandbox.seccomp.deny` names only syscalls the filter knows.
fn check_seccomp_deny(deny: &[String]) -> Result<(), SpecError> {
    for (i, d) in deny.iter().enumerate() {
        if crate::policy::syscalls::number(d).is_none() {
            return Err(field_err(
                format!("sandbox.seccomp.deny[{i}]"),
                format!("`{d}` is not an x86_64 syscall name"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
