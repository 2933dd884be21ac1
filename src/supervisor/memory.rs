//! The supervisor's own memory: once it is up, the pages of nemoclaw's executable that only
//! start-up needed (loading, checking and rendering the blueprint and its plugin, building the
//! gateway) are handed back to the kernel with `MADV_PAGEOUT`. They are clean file pages, so
//! nothing is lost: whatever the supervisor runs again later (a restart's spawn) faults back
//! in from the page cache. What stays resident is the loop's working set, which is the memory
//! nemoclaw really adds next to each agent.

use std::path::Path;

/// Pages out the executable's file mappings of this process. Best effort: an old kernel
/// without `MADV_PAGEOUT` (before 5.4) or an unreadable `/proc/self/maps` changes nothing.
pub fn trim_startup_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, end) in exe_ranges(&maps, &exe) {
        let Ok(len) = usize::try_from(end - start) else {
            continue;
        };
        // SAFETY: the range is one whole mapping of this process's own executable file, read
        // from /proc/self/maps; MADV_PAGEOUT only drops clean file pages from the page tables
        // (they are read again on the next access), so no memory the program uses is changed
        // or unmapped. A failure (EINVAL on old kernels) is ignored: it is advice.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT);
        }
    }
}

/// The address ranges of `/proc/self/maps` lines that map `exe` (pure).
fn exe_ranges(maps: &str, exe: &Path) -> Vec<(u64, u64)> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(exe.as_ref()))
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_mappings_are_picked() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 42 /usr/bin/nemoclaw
55d0c0100000-55d0c0900000 r-xp 00100000 fd:01 42 /usr/bin/nemoclaw
7f0000000000-7f0000200000 rw-p 00000000 00:00 0
7f0000200000-7f0000300000 r-xp 00000000 fd:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            exe_ranges(maps, Path::new("/usr/bin/nemoclaw")),
            vec![
                (0x55d0_c000_0000, 0x55d0_c010_0000),
                (0x55d0_c010_0000, 0x55d0_c090_0000)
            ]
        );
    }
}
