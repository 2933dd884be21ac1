//! Semantic validation of one blueprint (pure). Filled in below.
