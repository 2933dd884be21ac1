-- The state.db Hermes 0.21 expects (schema version 3), as the test expects it after v2.rhai and
-- v3.rhai: the test compares a canonical dump (columns of every table, index definitions, every
-- row ordered) of the migrated database with one of a database built from this file.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '3');
INSERT INTO meta VALUES ('agent', 'hermes 0.19.0');

CREATE TABLE memories (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  session_id TEXT,
  content TEXT NOT NULL,
  created_at TEXT NOT NULL,
  scope TEXT NOT NULL DEFAULT 'global'
);
CREATE INDEX memories_scope_created ON memories (scope, created_at);
INSERT INTO memories VALUES (1, 'user', NULL, 'Name: Dana. Works night shifts, sleeps 09:00-16:00.', '2026-04-02T22:14:05Z', 'user');
INSERT INTO memories VALUES (2, 'user', NULL, 'Prefers metric units and 24h times.', '2026-04-02T22:15:40Z', 'user');
INSERT INTO memories VALUES (3, 'fact', NULL, 'The homelab NAS is at 10.0.0.20; backups run at 02:00.', '2026-04-05T01:03:11Z', 'global');
INSERT INTO memories VALUES (4, 'session', 's-0405-a', 'Debugging a Proxmox VM that will not boot after a kernel update.', '2026-04-05T01:20:00Z', 'session:s-0405-a');
INSERT INTO memories VALUES (5, 'session', 's-0405-a', 'Fix: pinned kernel 6.8.12 with proxmox-boot-tool.', '2026-04-05T02:02:37Z', 'session:s-0405-a');
INSERT INTO memories VALUES (6, 'fact', 's-0411-b', 'Grafana dashboard for the UPS lives at /d/ups-main.', '2026-04-11T23:48:00Z', 'global');
INSERT INTO memories VALUES (7, 'session', 's-0411-b', 'Wants alerts when UPS battery < 40 %.', '2026-04-11T23:50:12Z', 'session:s-0411-b');
INSERT INTO memories VALUES (8, 'fact', NULL, 'Prefers "doas" over "sudo" on Alpine hosts.', '2026-04-20T03:30:30Z', 'global');
INSERT INTO memories VALUES (9, 'user', NULL, 'Allergic to peanuts (mentioned when planning a team dinner).', '2026-04-27T20:00:00Z', 'user');
INSERT INTO memories VALUES (10, 'session', 's-0502-c', 'Planning migration of Home Assistant to a new VM.', '2026-05-02T00:10:10Z', 'session:s-0502-c');
INSERT INTO memories VALUES (11, 'note', NULL, 'Unclassified note imported from 0.18.', '2026-03-30T12:00:00Z', 'global');
INSERT INTO memories VALUES (12, 'session', NULL, 'Session memory whose session id was lost in the 0.18 import.', '2026-03-30T12:00:01Z', 'global');
