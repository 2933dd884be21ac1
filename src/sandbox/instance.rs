//! From a blueprint and the home to a checked [`SandboxSpec`]: the glue `run`, `start` and the
//! supervisor share (id range, state dir, secrets, host probe, host checks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::blueprint::credential::CredentialRef;
use crate::blueprint::types::Blueprint;
use crate::home::Home;

use super::ids::{self, IdsError};
use super::spawn::{self, SpawnError};
use super::spec::{self, AgentLaunch, HostView, SandboxSpec, SpecError, SpecInput};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Ids(#[from] IdsError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("agent.secrets[{index}] ({name}): cannot read {what}")]
    Secret {
        index: usize,
        name: String,
        /// Where the secret was to come from (`env X`, `file Y`, `an inline value`).
        what: String,
        #[source]
        source: SecretError,
    },
    #[error("cannot find the nemoclaw executable to mount into the sandbox")]
    Exe(#[source] std::io::Error),
}

/// Why one of `agent.secrets` cannot be read on the host.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("it is not set")]
    NotSet(#[source] std::env::VarError),
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("secrets must be referenced, not written inline")]
    Inline,
}

/// The directory the sandbox root is mounted on (inside the sandbox's own mount namespace).
pub fn root_dir(home: &Home, name: &str) -> PathBuf {
    home.run_dir(name).join("root")
}

/// Reads `agent.secrets` on the host.
pub fn resolve_secrets(
    home: &Home,
    bp: &Blueprint,
) -> Result<BTreeMap<String, String>, InstanceError> {
    let mut out = BTreeMap::new();
    for (index, s) in bp.agent.secrets.iter().enumerate() {
        let value = read_secret(home, &s.from).map_err(|source| InstanceError::Secret {
            index,
            name: s.name.clone(),
            what: s.from.describe(),
            source,
        })?;
        out.insert(s.name.clone(), value);
    }
    Ok(out)
}

/// One secret's value: an environment variable, or a file under the home's credentials.
fn read_secret(home: &Home, from: &CredentialRef) -> Result<String, SecretError> {
    match from {
        CredentialRef::Env(v) => std::env::var(v).map_err(SecretError::NotSet),
        CredentialRef::File(f) => {
            let value = std::fs::read_to_string(home.credentials().join(f))?;
            Ok(value.trim_end_matches('\n').to_string())
        }
        CredentialRef::Inline(_) => Err(SecretError::Inline),
    }
}

/// Builds and checks the spec; creates the state dir (owned by the sandbox's uid). Nothing
/// else is created, so a failure here leaves nothing behind.
pub fn spec_for(
    home: &Home,
    bp: &Blueprint,
    command: Option<Vec<String>>,
    agent: Option<&AgentLaunch>,
) -> Result<SandboxSpec, InstanceError> {
    let name = bp.metadata.name.as_str();
    let ids = ids::allocate(home, name)?;
    let exe = std::fs::canonicalize("/proc/self/exe").map_err(InstanceError::Exe)?;
    let sys_root = spec::system_root(bp);
    if bp.filesystem.rootfs.is_some() && !sys_root.is_dir() {
        return Err(SpecError::Field {
            field: "filesystem.rootfs".into(),
            message: format!("{} is not a directory", sys_root.display()),
        }
        .into());
    }
    let host = HostView::probe(&sys_root);
    let user_home = std::env::var_os("HOME").map(PathBuf::from);
    let state_dir = home.state(name);
    let root = root_dir(home, name);
    let secrets = resolve_secrets(home, bp)?;
    let spec = spec::build(&SpecInput {
        blueprint: bp,
        state_dir: &state_dir,
        nemoclaw_exe: &exe,
        root_dir: &root,
        user_home: user_home.as_deref(),
        ids,
        host: &host,
        command,
        secrets,
        agent,
    })?;
    check_host(&spec)?;
    spawn::prepare_host(&spec)?;
    check_state_dir(&spec)?;
    if let Some(dir) = agent
        .filter(|a| a.install_writable)
        .and_then(|a| a.install.as_ref())
    {
        give_to_agent(dir, &spec)?;
    }
    Ok(spec)
}

/// Gives a directory the sandbox writes (a setup sandbox's install directory) to its agent.
fn give_to_agent(dir: &Path, spec: &SandboxSpec) -> Result<(), InstanceError> {
    let uid = nix::unistd::Uid::from_raw(spec.host_uid());
    let gid = nix::unistd::Gid::from_raw(spec.host_gid());
    nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| {
        InstanceError::Spawn(SpawnError::Io {
            what: format!("cannot give {} to the sandbox's uid {uid}", dir.display()),
            source: e.into(),
        })
    })
}

/// Whether `p` exists (helper for callers reporting leftovers).
pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// Host checks run before anything is created: every bind source (other than the state dir,
/// which is created with the right owner first) exists, and the command is found. Errors name
/// the blueprint field.
pub fn check_host(spec: &SandboxSpec) -> Result<(), SpecError> {
    for m in &spec.mounts {
        if let spec::MountKind::Bind { source, file, .. } = &m.kind {
            if source == &spec.state_dir {
                continue;
            }
            let meta = std::fs::metadata(source);
            let ok = match &meta {
                Ok(md) => md.is_dir() != *file,
                Err(_) => false,
            };
            if !ok {
                let what = if meta.is_err() {
                    "does not exist"
                } else if *file {
                    "is a directory, not a file"
                } else {
                    "is not a directory"
                };
                return Err(spec::field_err(
                    m.origin.clone(),
                    format!("{} {what}", source.display()),
                ));
            }
        }
    }
    if spec.resolve_command(|p| p.is_file()).is_none() {
        let arg0 = spec.argv.first().map(String::as_str).unwrap_or("");
        return Err(spec::field_err(
            spec.command_origin.clone(),
            format!(
                "`{arg0}` is not found inside the sandbox (PATH={})",
                spec.env.get("PATH").map(String::as_str).unwrap_or("")
            ),
        ));
    }
    Ok(())
}

/// The state dir exists, is a directory and is writable.
pub fn check_state_dir(spec: &SandboxSpec) -> Result<(), SpecError> {
    match std::fs::metadata(&spec.state_dir) {
        Ok(md) if md.is_dir() => {}
        _ => {
            return Err(spec::field_err(
                "state directory",
                format!("{} is not a directory", spec.state_dir.display()),
            ))
        }
    }
    if nix::unistd::access(&spec.state_dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(spec::field_err(
            "state directory",
            format!("{} is not writable", spec.state_dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blueprint_with_secrets(secrets: &str) -> Blueprint {
        let yaml = format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: s1\n  version: 1\nagent:\n  command: /bin/sh\n  secrets:\n{secrets}");
        crate::blueprint::load::parse_str(&yaml)
            .map_err(|d| format!("{d:?}"))
            .unwrap()
    }

    #[test]
    fn unreadable_secrets_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let bp = blueprint_with_secrets(
            "    - {name: TOKEN, from: {env: NEMOCLAW_INSTANCE_TEST_UNSET}}\n",
        );
        let e = resolve_secrets(&home, &bp).unwrap_err();
        assert!(
            matches!(
                &e,
                InstanceError::Secret {
                    index: 0,
                    source: SecretError::NotSet(std::env::VarError::NotPresent),
                    ..
                }
            ),
            "{e:?}"
        );
        let chain = crate::error_chain(&e);
        assert!(
            chain.starts_with(
                "agent.secrets[0] (TOKEN): cannot read environment variable NEMOCLAW_INSTANCE_TEST_UNSET: it is not set"
            ),
            "{chain}"
        );

        let bp = blueprint_with_secrets("    - {name: TOKEN, from: {file: missing}}\n");
        let e = resolve_secrets(&home, &bp).unwrap_err();
        let InstanceError::Secret {
            source: SecretError::Read(io),
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(crate::error_chain(&e).ends_with(&io.to_string()));
    }
}
