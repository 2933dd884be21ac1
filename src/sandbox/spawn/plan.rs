//! The child's file-system operations, planned from the spec: the root tmpfs, its directories,
//! links and files, every mount with its restriction, then pivot_root and the read-only root.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sandbox::child::Op;
use crate::sandbox::spec::{MountKind, MountSpec, SandboxSpec, ROOT_TMPFS_SIZE};

use super::{cstr, SpawnError};

const NOSUID: libc::c_ulong = libc::MS_NOSUID as libc::c_ulong;
const NODEV: libc::c_ulong = libc::MS_NODEV as libc::c_ulong;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC as libc::c_ulong;
const RDONLY: libc::c_ulong = libc::MS_RDONLY as libc::c_ulong;
const BIND: libc::c_ulong = libc::MS_BIND as libc::c_ulong;
const REMOUNT: libc::c_ulong = libc::MS_REMOUNT as libc::c_ulong;

/// The links `/dev` gets once its tmpfs is mounted.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// The operations and, for each, a description for errors.
pub struct MountPlan<'a> {
    root: &'a Path,
    pub ops: Vec<Op>,
    pub names: Vec<String>,
    /// Directories already created in the root (each is created once).
    made: Vec<String>,
}

/// A `mount(2)` with no source, type or data (a propagation change or a remount).
fn remount(target: CString, flags: libc::c_ulong) -> Op {
    Op::Mount {
        source: None,
        target,
        fstype: None,
        flags,
        data: None,
    }
}

/// A new file system of type `fstype` (its source is the type's name).
fn new_fs(
    fstype: &str,
    target: CString,
    flags: libc::c_ulong,
    data: Option<String>,
) -> Result<Op, SpawnError> {
    Ok(Op::Mount {
        source: Some(cstr(fstype)?),
        target,
        fstype: Some(cstr(fstype)?),
        flags,
        data: data.map(cstr).transpose()?,
    })
}

impl<'a> MountPlan<'a> {
    /// The whole plan for `spec`.
    pub fn of(spec: &'a SandboxSpec) -> Result<MountPlan<'a>, SpawnError> {
        let mut plan = MountPlan {
            root: spec.root_dir.as_path(),
            ops: Vec::new(),
            names: Vec::new(),
            made: Vec::new(),
        };
        plan.root_tmpfs()?;
        plan.dirs_links_files(spec)?;
        for m in &spec.mounts {
            plan.mount(m)?;
        }
        plan.pivot()?;
        Ok(plan)
    }

    fn push(&mut self, op: Op, name: String) {
        self.ops.push(op);
        self.names.push(name);
    }

    /// The host path of `inside` under the new root.
    fn host_path(&self, inside: &str) -> Result<CString, SpawnError> {
        let path = self.root.join(inside.trim_start_matches('/'));
        cstr(path.as_os_str().as_bytes())
    }

    /// `/` private (nothing propagates back to the host), then the root tmpfs.
    fn root_tmpfs(&mut self) -> Result<(), SpawnError> {
        let private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
        self.push(remount(cstr("/")?, private), "make / private".into());
        let data = format!("size={ROOT_TMPFS_SIZE},mode=0755,nr_inodes=4096");
        let target = cstr(self.root.as_os_str().as_bytes())?;
        let op = new_fs("tmpfs", target, NOSUID | NODEV, Some(data))?;
        let name = format!("mount the root tmpfs on {}", self.root.display());
        self.push(op, name);
        Ok(())
    }

    /// Creates `inside` and its parents, each once.
    fn mkdirs(&mut self, inside: &str) -> Result<(), SpawnError> {
        let mut cur = String::new();
        for comp in inside.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            if !self.made.contains(&cur) {
                self.made.push(cur.clone());
                let path = self.host_path(&cur)?;
                self.push(Op::Mkdir { path, mode: 0o755 }, format!("create {cur}"));
            }
        }
        Ok(())
    }

    /// The spec's plain directories, symlinks and generated files.
    fn dirs_links_files(&mut self, spec: &SandboxSpec) -> Result<(), SpawnError> {
        for d in &spec.dirs {
            self.mkdirs(d)?;
        }
        for (link, target) in &spec.symlinks {
            let op = Op::Symlink {
                target: cstr(target)?,
                link: self.host_path(link)?,
            };
            self.push(op, format!("link {link} -> {target}"));
        }
        for f in &spec.files {
            if let Some(parent) = Path::new(&f.path).parent().and_then(|p| p.to_str()) {
                self.mkdirs(parent)?;
            }
            let op = Op::WriteFile {
                path: self.host_path(&f.path)?,
                contents: f.contents.clone().into_bytes(),
                mode: f.mode,
            };
            self.push(op, format!("write {}", f.path));
        }
        Ok(())
    }

    /// One mount: its mount point (a file or a directory), then the mount itself.
    fn mount(&mut self, m: &MountSpec) -> Result<(), SpawnError> {
        let target = self.host_path(&m.target)?;
        let parent = Path::new(&m.target)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/");
        self.mkdirs(parent)?;
        if matches!(m.kind, MountKind::Bind { file: true, .. }) {
            let op = Op::Touch {
                path: target.clone(),
            };
            self.push(op, format!("create mount point {}", m.target));
        } else {
            self.mkdirs(&m.target)?;
        }
        let desc = |what: &str| format!("{what} {} ({})", m.target, m.origin);
        match &m.kind {
            MountKind::Bind {
                source,
                read_only,
                file,
            } => self.bind(m, target, source, *read_only, *file)?,
            MountKind::Tmpfs { size, mode } => {
                let dev = m.target == "/dev";
                let flags = NOSUID | NODEV | if dev { NOEXEC } else { 0 };
                let data = format!("size={size},mode={mode:o}");
                let op = new_fs("tmpfs", target, flags, Some(data))?;
                self.push(op, desc("mount tmpfs at"));
                if dev {
                    self.dev_links()?;
                }
            }
            MountKind::Proc => {
                let op = new_fs("proc", target, NOSUID | NODEV | NOEXEC, None)?;
                self.push(op, desc("mount proc at"));
            }
            MountKind::Devpts => {
                let data = "newinstance,ptmxmode=0666,mode=0620".to_string();
                let op = new_fs("devpts", target, NOSUID | NOEXEC, Some(data))?;
                self.push(op, desc("mount devpts at"));
            }
        }
        Ok(())
    }

    /// A bind mount, then its restriction: device nodes keep `dev` (and lose `exec`),
    /// everything else is nodev; nothing is suid.
    fn bind(
        &mut self,
        m: &MountSpec,
        target: CString,
        source: &Path,
        read_only: bool,
        file: bool,
    ) -> Result<(), SpawnError> {
        let desc = |what: &str| format!("{what} {} ({})", m.target, m.origin);
        let op = Op::Mount {
            source: Some(cstr(source.as_os_str().as_bytes())?),
            target: target.clone(),
            fstype: None,
            flags: BIND,
            data: None,
        };
        self.push(op, desc(&format!("bind {} at", source.display())));
        let device = file && m.target.starts_with("/dev/");
        let mut flags = BIND | REMOUNT | NOSUID | if device { NOEXEC } else { NODEV };
        if read_only {
            flags |= RDONLY;
        }
        self.push(remount(target, flags), desc("restrict"));
        Ok(())
    }

    /// `/dev/fd`, `/dev/std*` and `/dev/ptmx`.
    fn dev_links(&mut self) -> Result<(), SpawnError> {
        for (link, to) in DEV_LINKS {
            let op = Op::Symlink {
                target: cstr(to)?,
                link: self.host_path(&format!("/dev/{link}"))?,
            };
            self.push(op, format!("link /dev/{link}"));
        }
        Ok(())
    }

    /// Into the new root, which then becomes read-only.
    fn pivot(&mut self) -> Result<(), SpawnError> {
        let root = cstr(self.root.as_os_str().as_bytes())?;
        self.push(
            Op::PivotRoot { root },
            "pivot_root into the sandbox root".into(),
        );
        let flags = REMOUNT | RDONLY | NOSUID | NODEV;
        self.push(remount(cstr("/")?, flags), "make the root read-only".into());
        Ok(())
    }
}
