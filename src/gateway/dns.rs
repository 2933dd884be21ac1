//! The sandbox DNS resolver: allowed names from the host resolver, NXDOMAIN for the rest.
