//! The per-sandbox gateway: the agent's only way out. The inference router (OpenAI-compatible,
//! holds the keys) and the egress proxy and DNS that enforce the domain allowlist.

pub mod credentials;
pub mod dns;
pub mod egress;
pub mod inference;
pub mod netns;
