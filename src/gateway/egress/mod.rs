//! The egress proxy: explicit (CONNECT, absolute-form HTTP) and transparent (SO_ORIGINAL_DST, SNI/Host), deciding by domain.
