//! The spec turned into what the child needs ([`Prepared`]): the mount plan, its C strings,
//! the command's candidates and environment, and the seccomp programs. Done before the clone,
//! so the child only makes raw syscalls on ready data.

use std::ffi::CString;

use crate::sandbox::child::{CStringArray, Prepared};
use crate::sandbox::seccomp;
use crate::sandbox::spec::{SandboxSpec, SANDBOX_PATH};

use super::plan::MountPlan;
use super::{SpawnError, SpawnOptions};

/// The most arguments, and the most environment variables, a sandboxed command may get.
pub const MAX_EXEC_STRINGS: usize = 4096;

/// The highest capability number assumed when the kernel does not say.
const DEFAULT_LAST_CAP: u32 = 40;

/// `s` as a C string; a NUL byte inside is an error naming the value.
pub(crate) fn cstr(s: impl AsRef<[u8]>) -> Result<CString, SpawnError> {
    CString::new(s.as_ref()).map_err(|source| SpawnError::Nul {
        value: String::from_utf8_lossy(s.as_ref()).into_owned(),
        source,
    })
}

/// Turns the spec into the child's operations. Pure apart from reading cap_last_cap.
pub fn prepare(spec: &SandboxSpec, opts: &SpawnOptions) -> Result<Prepared, SpawnError> {
    let plan = MountPlan::of(spec)?;
    let command = CommandStrings::of(spec)?;
    Ok(Prepared {
        ops: plan.ops,
        op_names: plan.names,
        hostname: cstr(&spec.hostname)?,
        nofile: spec.rlimits.nofile,
        uid: spec.uid,
        gid: spec.gid,
        last_cap: last_cap(),
        workdir: cstr(&spec.workdir)?,
        seccomp: if opts.seccomp {
            Some(seccomp::build(&spec.seccomp_deny)?)
        } else {
            None
        },
        agent_argv: command.argv,
        agent_candidates: command.candidates,
        envp: command.envp,
        cgroupns: opts.cgroups,
        cgroup_procs: Vec::new(),
    })
}

/// The highest capability number of this kernel (the child drops 0..=it), at most 63.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_LAST_CAP)
        .min(63)
}

/// The agent's argv, the paths execve tries for `argv[0]`, and its environment, as C strings.
struct CommandStrings {
    argv: CStringArray,
    candidates: Vec<CString>,
    envp: CStringArray,
}

impl CommandStrings {
    fn of(spec: &SandboxSpec) -> Result<CommandStrings, SpawnError> {
        let argv = spec.argv.iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
        if argv.len() > MAX_EXEC_STRINGS || spec.env.len() > MAX_EXEC_STRINGS {
            return Err(SpawnError::TooManyArgs(MAX_EXEC_STRINGS));
        }
        let path = spec.env.get("PATH").map(String::as_str);
        let candidates = exec_candidates(&spec.argv[0], path, &spec.workdir)
            .into_iter()
            .map(cstr)
            .collect::<Result<Vec<_>, _>>()?;
        let envp = spec
            .env
            .iter()
            .map(|(k, v)| cstr(format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CommandStrings {
            argv: CStringArray::new(argv),
            candidates,
            envp: CStringArray::new(envp),
        })
    }
}

/// The paths execve tries for `arg0`, in order (execvp's PATH search, done before the fork).
pub fn exec_candidates(arg0: &str, path: Option<&str>, workdir: &str) -> Vec<String> {
    if arg0.contains('/') {
        if arg0.starts_with('/') {
            vec![arg0.to_string()]
        } else {
            vec![format!("{}/{arg0}", workdir.trim_end_matches('/'))]
        }
    } else {
        path.unwrap_or(SANDBOX_PATH)
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
            .collect()
    }
}
