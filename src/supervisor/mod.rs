//! The long-running per-sandbox supervisor process.
