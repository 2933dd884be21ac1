//! The source config file (`nemoclaw.yaml` beside the blueprints): settings of the source as a
//! whole rather than of one sandbox.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{Blueprint, Resources, SandboxSettings};

/// `nemoclaw.yaml`: `apiVersion: nemoclaw.dev/v1`, `kind: SourceConfig` (both optional in a
/// file of that name).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "nemoclaw source config (nemoclaw.yaml)")]
pub struct SourceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Destroy deployed sandboxes whose blueprint is gone from the source. Default false.
    #[serde(default)]
    pub prune: bool,
    /// Values every blueprint in the source gets unless it sets them itself.
    #[serde(default)]
    pub defaults: SourceDefaults,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceDefaults {
    /// Labels added to every blueprint (a blueprint's own label of the same key wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Resource limits for blueprints that leave a field unset.
    #[serde(default)]
    pub resources: Resources,
    /// Sandbox settings for blueprints that leave a field unset; `seccomp.deny` lists are joined.
    #[serde(default)]
    pub sandbox: SandboxSettings,
}

impl SourceDefaults {
    /// Fills the blueprint's unset fields from these defaults. Idempotent.
    pub fn apply_to(&self, bp: &mut Blueprint) {
        for (k, v) in &self.labels {
            bp.metadata
                .labels
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        let r = &mut bp.resources;
        let d = &self.resources;
        r.cpu = r.cpu.or(d.cpu);
        r.memory = r.memory.or(d.memory);
        r.pids = r.pids.or(d.pids);
        r.disk = r.disk.or(d.disk);
        if r.gpu.is_none() {
            r.gpu.clone_from(&d.gpu);
        }
        let s = &mut bp.sandbox;
        let d = &self.sandbox;
        s.tmp_size = s.tmp_size.or(d.tmp_size);
        s.nofile = s.nofile.or(d.nofile);
        s.uid = s.uid.or(d.uid);
        s.gid = s.gid.or(d.gid);
        for sys in &d.seccomp.deny {
            if !s.seccomp.deny.contains(sys) {
                s.seccomp.deny.push(sys.clone());
            }
        }
    }
}
