use super::*;
use crate::sandbox::child::{Op, Prepared};
use crate::sandbox::spec::{HostEntry, HostView, IdRange, SpecInput};
use std::path::Path;

fn spec() -> SandboxSpec {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.yaml");
    std::fs::write(
        &p,
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: plan\n  version: 1\nagent:\n  command: /bin/sh\nfilesystem:\n  mounts:\n    - {host: /srv/data, path: /data}\n",
    )
    .unwrap();
    let bp = crate::blueprint::set::load_one(&p).unwrap().blueprint;
    let host = HostView {
        system: vec![
            ("usr".into(), HostEntry::Dir),
            ("bin".into(), HostEntry::Symlink("usr/bin".into())),
        ],
        ssl_certs: None,
        alternatives: None,
    };
    crate::sandbox::spec::build(&SpecInput {
        blueprint: &bp,
        state_dir: Path::new("/h/state/plan"),
        nemoclaw_exe: Path::new("/x/nemoclaw"),
        root_dir: Path::new("/h/run/plan/root"),
        user_home: None,
        ids: IdRange::nth(0),
        host: &host,
        command: None,
        secrets: Default::default(),
        agent: None,
    })
    .unwrap()
}

fn mounts(p: &Prepared) -> Vec<(Option<String>, String, libc::c_ulong)> {
    p.ops
        .iter()
        .filter_map(|op| match op {
            Op::Mount {
                source,
                target,
                flags,
                ..
            } => Some((
                source.as_ref().map(|s| s.to_string_lossy().into_owned()),
                target.to_string_lossy().into_owned(),
                *flags,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn every_bind_is_restricted_and_read_only_where_asked() {
    let p = prepare(&spec(), &SpawnOptions::default()).unwrap();
    let m = mounts(&p);
    let bind = libc::MS_BIND as libc::c_ulong;
    let remount = libc::MS_REMOUNT as libc::c_ulong;
    for (i, (src, target, flags)) in m.iter().enumerate() {
        if *flags == bind {
            let (_, t2, f2) = &m[i + 1];
            assert_eq!(
                t2, target,
                "a bind of {src:?} is followed by its restriction"
            );
            assert!(
                f2 & remount != 0 && f2 & libc::MS_NOSUID as libc::c_ulong != 0,
                "{target}: nosuid"
            );
            let ro = f2 & libc::MS_RDONLY as libc::c_ulong != 0;
            let want_rw = target.ends_with("/workspace/state") || target.contains("/dev/");
            assert_eq!(
                ro, !want_rw,
                "{target}: read-only unless it is the state dir or a device node"
            );
            if !target.contains("/dev/") {
                assert!(f2 & libc::MS_NODEV as libc::c_ulong != 0, "{target}: nodev");
            }
        }
    }
    assert!(m
        .iter()
        .any(|(s, t, _)| s.as_deref() == Some("/srv/data") && t == "/h/run/plan/root/data"));
}

#[test]
fn root_is_private_first_then_pivoted_then_read_only() {
    let p = prepare(&spec(), &SpawnOptions::default()).unwrap();
    let m = mounts(&p);
    assert_eq!(m[0].1, "/");
    assert_eq!(m[0].2, (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong);
    let n = p.ops.len();
    assert!(
        matches!(&p.ops[n - 2], Op::PivotRoot { root } if root.to_str() == Ok("/h/run/plan/root"))
    );
    assert!(
        matches!(&p.ops[n - 1], Op::Mount { target, flags, .. } if target.to_str() == Ok("/") && flags & libc::MS_RDONLY as libc::c_ulong != 0)
    );
    assert_eq!(p.op_names.len(), n, "every op has a description for errors");
    assert!(
        p.ops.iter().all(|op| match op {
            Op::Mount { target, .. }
            | Op::Mkdir { path: target, .. }
            | Op::Touch { path: target }
            | Op::WriteFile { path: target, .. } => {
                let t = target.to_str().unwrap();
                t == "/" || t.starts_with("/h/run/plan/root")
            }
            _ => true,
        }),
        "nothing is created outside the new root"
    );
}

#[test]
fn init_runs_the_command_with_the_built_env_and_optional_seccomp() {
    let s = spec();
    let p = prepare(&s, &SpawnOptions::default()).unwrap();
    let argv: Vec<_> = p
        .agent_argv
        .strings()
        .iter()
        .map(|a| a.to_str().unwrap().to_string())
        .collect();
    assert_eq!(argv, vec!["/bin/sh"]);
    let cands: Vec<_> = p
        .agent_candidates
        .iter()
        .map(|a| a.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cands, vec!["/bin/sh"]);
    assert_eq!(p.envp.strings().len(), s.env.len());
    assert!(p.seccomp.is_some() && p.cgroupns);
    let bare = prepare(
        &s,
        &SpawnOptions {
            cgroups: false,
            seccomp: false,
        },
    )
    .unwrap();
    assert!(bare.seccomp.is_none() && !bare.cgroupns);
    assert_eq!((p.uid, p.gid), (1000, 1000));
}

#[test]
fn exec_candidates_follow_path_like_execvp() {
    assert_eq!(exec_candidates("/bin/sh", None, "/w"), vec!["/bin/sh"]);
    assert_eq!(
        exec_candidates("./run.sh", None, "/workspace/state"),
        vec!["/workspace/state/./run.sh"]
    );
    assert_eq!(
        exec_candidates("true", Some("/usr/bin:/bin/"), "/w"),
        vec!["/usr/bin/true", "/bin/true"]
    );
}

#[test]
fn exec_arrays_are_null_terminated_and_point_at_their_strings() {
    let s = spec();
    let p = prepare(&s, &SpawnOptions::default()).unwrap();
    let n = p.envp.strings().len();
    // SAFETY: the array holds `n` valid pointers and then NULL, all owned by `p`.
    let ptrs = unsafe { std::slice::from_raw_parts(p.envp.as_ptr(), n + 1) };
    assert!(ptrs[n].is_null());
    for (ptr, s) in ptrs[..n].iter().zip(p.envp.strings()) {
        assert_eq!(*ptr, s.as_ptr());
    }
}

#[test]
fn too_many_arguments_are_refused_before_anything_starts() {
    let mut s = spec();
    s.argv = vec!["/bin/true".to_string(); MAX_EXEC_STRINGS + 1];
    let e = prepare(&s, &SpawnOptions::default()).unwrap_err();
    assert!(
        matches!(e, SpawnError::TooManyArgs(MAX_EXEC_STRINGS)),
        "{e}"
    );
}
