//! Checks of what the sandbox is made of: filesystem, resources, lifecycle, sandbox settings.

use std::collections::HashSet;

use super::{Findings, RESERVED_SANDBOX_PATHS};
use crate::blueprint::diag::did_you_mean;
use crate::blueprint::types::*;
use crate::policy::domain::check_port;

fn points_into_home(host: &str) -> bool {
    host.split('/').any(|c| c == ".nemoclaw")
        || std::env::var("NEMOCLAW_HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .is_some_and(|h| {
                let h = h.trim_end_matches('/');
                host == h || host.starts_with(&format!("{h}/"))
            })
}

fn clean_abs(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == ".." || c == ".")
}

pub(super) fn check_filesystem(fs: &Filesystem, f: &mut Findings) {
    if let Some(r) = &fs.rootfs {
        if !clean_abs(r) {
            f.err(
                "filesystem.path",
                "filesystem.rootfs",
                format!("rootfs `{r}` must be an absolute path without `..`"),
            );
        }
    }
    let mut targets = HashSet::new();
    for (i, m) in fs.mounts.iter().enumerate() {
        let path = format!("filesystem.mounts[{i}]");
        let host_ok =
            clean_abs(&m.host) || m.host.starts_with("~/") && !m.host.split('/').any(|c| c == "..");
        if !host_ok {
            f.err(
                "filesystem.path",
                format!("{path}.host"),
                format!(
                    "host path `{}` must be absolute (or start with ~/) and contain no `..`",
                    m.host
                ),
            );
        } else if points_into_home(&m.host) {
            f.err("filesystem.mount-into-home", format!("{path}.host"), format!("`{}` is inside the nemoclaw home, which holds credentials and other sandboxes' state", m.host))
                .hint("mount a directory outside ~/.nemoclaw; the agent's own state is already at /workspace/state");
        }
        let target = m.path.trim_end_matches('/');
        let target = if target.is_empty() { "/" } else { target };
        if !clean_abs(&m.path) {
            f.err(
                "filesystem.path",
                format!("{path}.path"),
                format!(
                    "sandbox path `{}` must be absolute and contain no `..`",
                    m.path
                ),
            );
        } else if RESERVED_SANDBOX_PATHS.contains(&target)
            || target.starts_with("/proc/")
            || target.starts_with("/dev/")
            || target.starts_with("/sys/")
        {
            f.err(
                "filesystem.reserved-path",
                format!("{path}.path"),
                format!(
                    "`{}` is provided by nemoclaw and cannot be mounted over",
                    m.path
                ),
            )
            .hint("mount under /workspace/ or /mnt/, e.g. /workspace/data");
        } else if !targets.insert(target.to_string()) {
            f.err(
                "filesystem.duplicate-mount",
                format!("{path}.path"),
                format!("two mounts target `{}`", m.path),
            );
        }
    }
}

pub(super) fn check_resources(r: &Resources, f: &mut Findings) {
    if r.pids == Some(0) {
        f.err(
            "resources.pids",
            "resources.pids",
            "pids: 0 would not even let the agent start",
        )
        .hint("give at least 8, or remove it for the default 512");
    }
    if let Some(m) = r.memory {
        if m.bytes() < 8 << 20 {
            f.err(
                "resources.memory",
                "resources.memory",
                format!("memory {m} is below 8Mi, too little for any agent to start"),
            )
            .hint("give at least 64Mi; agents such as OpenClaw need about 2Gi");
        }
    }
    if let Some(d) = r.disk {
        if d.bytes() < 1 << 20 {
            f.err(
                "resources.disk",
                "resources.disk",
                format!("disk cap {d} is below 1Mi"),
            );
        }
    }
    match &r.gpu {
        Some(Gpu::Count(0)) => {
            f.err("resources.gpu", "resources.gpu", "gpu: 0 asks for no GPU")
                .warn()
                .hint("remove the field instead");
        }
        Some(Gpu::Devices(list)) => {
            if list.is_empty() {
                f.err(
                    "resources.gpu",
                    "resources.gpu",
                    "an empty device list asks for no GPU",
                )
                .warn();
            }
            let mut seen = HashSet::new();
            for (i, d) in list.iter().enumerate() {
                if let GpuDevice::Uuid(u) = d {
                    if !u.starts_with("GPU-") && !u.starts_with("MIG-") {
                        f.err(
                            "resources.gpu",
                            format!("resources.gpu[{i}]"),
                            format!("`{u}` is neither a device index nor a GPU-/MIG- UUID"),
                        );
                    }
                }
                if !seen.insert(d) {
                    f.err(
                        "resources.gpu",
                        format!("resources.gpu[{i}]"),
                        "device listed twice",
                    );
                }
            }
        }
        _ => {}
    }
}

pub(super) fn check_lifecycle(l: &Lifecycle, f: &mut Findings) {
    if let Some(h) = &l.health_check {
        let p = "lifecycle.healthCheck";
        match (&h.exec, &h.http) {
            (None, None) | (Some(_), Some(_)) => {
                f.err(
                    "lifecycle.health-check",
                    p,
                    "a health check has exactly one of `exec` or `http`",
                );
            }
            (Some(cmd), None) if cmd.is_empty() || cmd[0].trim().is_empty() => {
                f.err(
                    "lifecycle.health-check",
                    format!("{p}.exec"),
                    "exec needs a command, e.g. [/bin/sh, -c, \"test -f /workspace/state/ready\"]",
                );
            }
            (None, Some(http)) => {
                if let Err(m) = check_port(http.port) {
                    f.err("network.port", format!("{p}.http.port"), m);
                }
                if !http.path.starts_with('/') {
                    f.err(
                        "lifecycle.health-check",
                        format!("{p}.http.path"),
                        "the path must start with `/`",
                    );
                }
            }
            _ => {}
        }
        if h.retries == Some(0) {
            f.err(
                "lifecycle.health-check",
                format!("{p}.retries"),
                "retries must be at least 1",
            );
        }
        if let (Some(i), Some(t)) = (h.interval, h.timeout) {
            if t > i {
                f.err(
                    "lifecycle.health-check",
                    format!("{p}.timeout"),
                    format!("timeout {t} is longer than the interval {i}"),
                )
                .warn();
            }
        }
        if h.interval.is_some_and(|i| i.as_duration().is_zero()) {
            f.err(
                "lifecycle.health-check",
                format!("{p}.interval"),
                "interval must be more than zero",
            );
        }
    }
    if let Some(c) = &l.checkpoint {
        if c.every.as_duration() < std::time::Duration::from_secs(1) {
            f.err(
                "lifecycle.checkpoint",
                "lifecycle.checkpoint.every",
                format!("every {} is below 1s: each checkpoint freezes the agent while its state is copied", c.every),
            )
            .hint("checkpoint every few hours, such as `every: 6h`");
        }
        if c.keep == Some(0) {
            f.err(
                "lifecycle.checkpoint",
                "lifecycle.checkpoint.keep",
                "keep: 0 would delete every checkpoint as soon as it is taken",
            )
            .hint("keep at least 1 (default 4), or remove `checkpoint`");
        }
    }
    if l.restore_on_crash_loop && l.checkpoint.is_none() {
        f.err(
            "lifecycle.checkpoint",
            "lifecycle.restoreOnCrashLoop",
            "restoreOnCrashLoop restores the newest checkpoint, but no `checkpoint` schedule is set (only `nemoclaw checkpoint NAME` would take one)",
        )
        .warn();
    }
    if l.max_restarts == Some(0) && l.restart != RestartPolicy::Never {
        f.err(
            "lifecycle.restart",
            "lifecycle.maxRestarts",
            "maxRestarts: 0 never restarts; say `restart: never` instead",
        )
        .warn();
    }
}

pub(super) fn check_sandbox(s: &SandboxSettings, f: &mut Findings) {
    for (i, name) in s.seccomp.deny.iter().enumerate() {
        if crate::policy::syscalls::number(name).is_none() {
            let e = f.err(
                "sandbox.syscall",
                format!("sandbox.seccomp.deny[{i}]"),
                format!("unknown syscall `{name}`"),
            );
            if let Some(s) = did_you_mean(name, crate::policy::syscalls::names()) {
                e.hint(format!("did you mean `{s}`?"));
            }
        }
    }
    if let Some(t) = s.tmp_size {
        if t.bytes() < 1 << 20 {
            f.err(
                "sandbox.tmp-size",
                "sandbox.tmpSize",
                format!("tmpSize {t} is below 1Mi"),
            );
        }
    }
    if let Some(n) = s.nofile {
        if !(16..=1 << 20).contains(&n) {
            f.err(
                "sandbox.nofile",
                "sandbox.nofile",
                format!("nofile {n} must be between 16 and 1048576"),
            );
        }
    }
    for (v, field) in [(s.uid, "uid"), (s.gid, "gid")] {
        match v {
            Some(0) => {
                f.err(
                    "sandbox.root",
                    format!("sandbox.{field}"),
                    format!("{field} 0 is root: the agent always runs unprivileged"),
                )
                .hint("remove it for the default 1000");
            }
            Some(n) if n >= 65536 => {
                f.err(
                    "sandbox.id-range",
                    format!("sandbox.{field}"),
                    format!("{field} {n} is outside the sandbox's 65536 ids"),
                );
            }
            _ => {}
        }
    }
}

pub(super) fn check_migrations(m: &crate::blueprint::types::Migrations, f: &mut Findings) {
    if m.keep == Some(0) {
        f.err(
            "migrations.keep",
            "migrations.keep",
            "keep: 0 would delete the snapshot an upgrade rolls back to as soon as it commits, so `nemoclaw rollback` would have nothing",
        )
        .hint("keep at least 1 (default 3)");
    }
    let l = &m.limits;
    let zero = [
        ("operations", l.operations == Some(0)),
        ("callDepth", l.call_depth == Some(0)),
        ("stringSize", l.string_size == Some(0)),
        ("arraySize", l.array_size == Some(0)),
        ("mapSize", l.map_size == Some(0)),
        (
            "wallTime",
            l.wall_time.is_some_and(|d| d.as_duration().is_zero()),
        ),
    ];
    for (field, is_zero) in zero {
        if is_zero {
            f.err(
                "migrations.limits",
                format!("migrations.limits.{field}"),
                format!("{field} must be more than zero: every script would fail at once"),
            )
            .hint("leave it out for the default, or raise it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::load::parse_str;

    fn findings(extra: &str) -> Vec<(String, bool)> {
        let bp: crate::blueprint::Blueprint = parse_str(&format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: a\n  version: 2\nagent:\n  type: demo\n{extra}")).unwrap();
        let mut f = Findings::default();
        check_lifecycle(&bp.lifecycle, &mut f);
        if let Some(m) = &bp.migrations {
            check_migrations(m, &mut f);
        }
        f.0.into_iter().map(|x| (x.path, x.warning)).collect()
    }

    #[test]
    fn checkpoints_and_migrations_refuse_settings_that_defeat_them() {
        assert!(findings("lifecycle:\n  checkpoint: {every: 6h, keep: 2}\n  restoreOnCrashLoop: true\nmigrations:\n  dir: m\n  keep: 1\n").is_empty());
        assert_eq!(
            findings("lifecycle:\n  checkpoint: {every: 100ms, keep: 0}\n"),
            [
                ("lifecycle.checkpoint.every".to_string(), false),
                ("lifecycle.checkpoint.keep".to_string(), false)
            ]
        );
        assert_eq!(
            findings("lifecycle:\n  restoreOnCrashLoop: true\n"),
            [("lifecycle.restoreOnCrashLoop".to_string(), true)]
        );
        assert_eq!(
            findings("migrations:\n  dir: m\n  keep: 0\n  limits: {wallTime: 0s, operations: 0}\n"),
            [
                ("migrations.keep".to_string(), false),
                ("migrations.limits.operations".to_string(), false),
                ("migrations.limits.wallTime".to_string(), false)
            ]
        );
    }
}
