//! Shared by the benchmarks: realistic generated blueprints.

/// A realistic blueprint, `agent-NNNN`, depending on its "parent" so the set forms a tree.
pub fn blueprint(i: usize) -> String {
    format!(
        r#"apiVersion: nemoclaw.dev/v1
kind: Blueprint
metadata:
  name: agent-{i:04}
  version: {v}
  labels:
    team: team-{t}
    tier: batch
agent:
  type: command
  command: /usr/bin/python3
  args: [/workspace/state/agent.py, --id, "{i}"]
  env:
    LOG_LEVEL: info
inference:
  backends:
    - name: nvidia
      kind: openai
      url: https://integrate.api.nvidia.com/v1
      apiKey: {{env: NVIDIA_API_KEY}}
      timeout: 90s
    - name: mock
      kind: mock
  routes:
    - match: "nvidia/"
      backends: [nvidia, mock]
  allowedModels: [nvidia/meta/llama-3.3-70b-instruct, "nvidia/nvidia/*"]
  limits:
    maxTokens: 4096
    temperature: {{min: 0, max: 1}}
    requestsPerMinute: 60
network:
  egress:
    presets: [github, pypi]
    allowedDomains:
      - api.example-{i}.com
      - "*.cdn.example.com"
      - {{host: git.example.com, ports: [22, 443]}}
    blockedPorts: [25]
resources:
  cpu: 1.5
  memory: 2Gi
  pids: 256
lifecycle:
  restart: always
  stopTimeout: 30s
  healthCheck:
    exec: [/bin/true]
    interval: 30s
{deps}"#,
        v = 1 + i % 3,
        t = i % 7,
        // A dependency tree: each agent depends on its parent, the first on nothing.
        deps = if i == 0 {
            String::new()
        } else {
            format!("dependsOn: [agent-{:04}]\n", i / 2)
        }
    )
}
