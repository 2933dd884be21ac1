//! The sandbox's file system: the directories, symlinks and mounts of its root, in the order
//! they are made.

use std::path::PathBuf;

use super::checks::{check_inside_path, check_mount_target, expand_home};
use super::host::system_root;
use super::{field_err, HostEntry, MountKind, MountSpec, SpecError, SpecInput};
use super::{AGENT_DIR, NEMOCLAW_BIN, STATE_PATH};

/// The device nodes bound from the host into the sandbox's `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// What [`layout`] puts into the sandbox root.
#[derive(Debug, Default)]
pub struct Layout {
    pub dirs: Vec<String>,
    pub symlinks: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
}

/// The whole root: system directories, `/etc`, `/proc` and `/dev`, the tmpfs mounts,
/// `/workspace`, then the blueprint's own mounts.
pub fn layout(input: &SpecInput<'_>, tmp_size: u64) -> Result<Layout, SpecError> {
    let mut l = Layout::default();
    system_dirs(input, &mut l)?;
    etc(input, &mut l);
    proc_and_dev(&mut l);
    tmp_and_workspace(input, tmp_size, &mut l);
    blueprint_mounts(input, &mut l)?;
    Ok(l)
}

fn bind(target: &str, source: PathBuf, read_only: bool, file: bool, origin: &str) -> MountSpec {
    MountSpec {
        target: target.to_string(),
        kind: MountKind::Bind {
            source,
            read_only,
            file,
        },
        origin: origin.to_string(),
    }
}

fn other(target: &str, kind: MountKind, origin: &str) -> MountSpec {
    MountSpec {
        target: target.to_string(),
        kind,
        origin: origin.to_string(),
    }
}

/// The host's (or the rootfs's) system directories: read-only binds, or symlinks as they are.
fn system_dirs(input: &SpecInput<'_>, l: &mut Layout) -> Result<(), SpecError> {
    let bp = input.blueprint;
    let sys_root = system_root(bp);
    let sys_origin = if bp.filesystem.rootfs.is_some() {
        "filesystem.rootfs"
    } else {
        "host system directories"
    };
    let has_usr_or_bin = input
        .host
        .system
        .iter()
        .any(|(n, _)| n == "usr" || n == "bin");
    if bp.filesystem.rootfs.is_some() && !has_usr_or_bin {
        return Err(field_err(
            "filesystem.rootfs",
            format!("{} has neither usr/ nor bin/", sys_root.display()),
        ));
    }
    for (dir, entry) in &input.host.system {
        let target = format!("/{dir}");
        match entry {
            HostEntry::Symlink(t) => l.symlinks.push((target, t.clone())),
            HostEntry::Dir => {
                l.mounts
                    .push(bind(&target, sys_root.join(dir), true, false, sys_origin))
            }
        }
    }
    Ok(())
}

/// `/etc` (its files are generated), then the host's certificates and alternatives read-only.
fn etc(input: &SpecInput<'_>, l: &mut Layout) {
    l.dirs.push("/etc".to_string());
    if let Some(certs) = &input.host.ssl_certs {
        let origin = "host /etc/ssl/certs";
        l.mounts
            .push(bind("/etc/ssl/certs", certs.clone(), true, false, origin));
    }
    if let Some(alt) = &input.host.alternatives {
        let origin = "host /etc/alternatives";
        l.mounts
            .push(bind("/etc/alternatives", alt.clone(), true, false, origin));
    }
}

/// A new `/proc`; a small `/dev` tmpfs with the harmless device nodes and a new devpts.
fn proc_and_dev(l: &mut Layout) {
    l.mounts
        .push(other("/proc", MountKind::Proc, "sandbox /proc"));
    let dev = MountKind::Tmpfs {
        size: 64 << 10,
        mode: 0o755,
    };
    l.mounts.push(other("/dev", dev, "sandbox /dev"));
    for node in DEV_NODES {
        let path = format!("/dev/{node}");
        l.mounts.push(bind(
            &path,
            PathBuf::from(&path),
            false,
            true,
            "sandbox /dev",
        ));
    }
    l.mounts
        .push(other("/dev/pts", MountKind::Devpts, "sandbox /dev"));
}

/// `/dev/shm` and `/tmp` (each `sandbox.tmpSize`), the state dir and the nemoclaw binary.
fn tmp_and_workspace(input: &SpecInput<'_>, tmp_size: u64, l: &mut Layout) {
    for target in ["/dev/shm", "/tmp"] {
        let tmpfs = MountKind::Tmpfs {
            size: tmp_size,
            mode: 0o1777,
        };
        l.mounts.push(other(target, tmpfs, "sandbox.tmpSize"));
    }
    l.dirs.push("/workspace".to_string());
    let state = input.state_dir.to_path_buf();
    l.mounts
        .push(bind(STATE_PATH, state, false, false, "state directory"));
    let exe = input.nemoclaw_exe.to_path_buf();
    l.mounts
        .push(bind(NEMOCLAW_BIN, exe, true, true, "nemoclaw binary"));
    if let Some(install) = input.agent.and_then(|a| a.install.as_ref().map(|i| (a, i))) {
        let (a, dir) = install;
        let origin = format!("agent.type `{}` install", a.kind);
        l.mounts.push(bind(
            AGENT_DIR,
            dir.clone(),
            !a.install_writable,
            false,
            &origin,
        ));
    }
}

/// `filesystem.mounts`: each target checked, each host path expanded.
fn blueprint_mounts(input: &SpecInput<'_>, l: &mut Layout) -> Result<(), SpecError> {
    for (i, m) in input.blueprint.filesystem.mounts.iter().enumerate() {
        let field = format!("filesystem.mounts[{i}]");
        check_inside_path(&m.path)
            .and_then(|()| check_mount_target(&m.path))
            .map_err(|reason| SpecError::check(format!("{field}.path"), reason))?;
        let host = expand_home(&m.host, input.user_home)
            .map_err(|reason| SpecError::check(format!("{field}.host"), reason))?;
        let origin = format!("{field}.host");
        l.mounts
            .push(bind(&m.path, host, m.read_only, false, &origin));
    }
    Ok(())
}
