//! The sealed network namespace: lo plus an inner veth pair, and the nftables ruleset (rendered as data).
