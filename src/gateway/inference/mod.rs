//! The inference router: OpenAI-compatible, validates against the blueprint, routes to backends, injects keys.
