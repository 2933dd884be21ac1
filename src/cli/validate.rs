//! `nemoclaw validate [PATH...]`: checks blueprints without looking at the host (for CI).
