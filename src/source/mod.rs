//! Desired-state sources: a directory of blueprints or a git repository, and the watcher.
