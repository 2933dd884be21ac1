//! The generated `/etc`: just enough for libc, DNS through the gateway and TLS.

use crate::policy::INFERENCE_HOST;

use super::{FileSpec, STATE_PATH};

/// `/etc/passwd`, `group`, `hosts`, `resolv.conf`, `nsswitch.conf` and `hostname`.
pub fn etc_files(name: &str, uid: u32, gid: u32) -> Vec<FileSpec> {
    let f = |path: &str, contents: String| FileSpec {
        path: path.to_string(),
        contents,
        mode: 0o644,
    };
    vec![
        f(
            "/etc/passwd",
            format!("root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nagent:x:{uid}:{gid}:nemoclaw agent:{STATE_PATH}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ),
        f("/etc/group", format!("root:x:0:\nagent:x:{gid}:\nnogroup:x:65534:\n")),
        f("/etc/hosts", format!("127.0.0.1\tlocalhost {INFERENCE_HOST}\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{name}\n")),
        f("/etc/resolv.conf", "nameserver 127.0.0.1\noptions edns0\n".to_string()),
        f("/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_string()),
        f("/etc/hostname", format!("{name}\n")),
    ]
}
