//! Plans for every action kind, with the exact human output.

use super::inventory::{blueprint_hash, Deployed, SourceRef, RECORD_FORMAT};
use super::plan::*;
use super::render::render_human;
use crate::blueprint::load::parse_str;
use crate::blueprint::Blueprint;

fn bp(name: &str, extra: &str) -> Blueprint {
    parse_str(&format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  type: demo\n{extra}"
    ))
    .unwrap()
}

fn desired(b: Blueprint) -> DesiredEntry {
    DesiredEntry {
        blueprint: b,
        migration_steps: vec![],
        plugin_hash: None,
    }
}

fn deployed(b: Blueprint) -> Deployed {
    Deployed {
        format: RECORD_FORMAT,
        name: b.metadata.name.clone(),
        hash: blueprint_hash(&b),
        version: b.metadata.version,
        blueprint: b,
        source: SourceRef::default(),
        created_at: 0,
        applied_at: 0,
        stopped: false,
        hold: None,
        plugin_hash: None,
    }
}

fn running(b: &Deployed) -> Live {
    Live::Running {
        healthy: Some(true),
        hash: Some(b.hash.clone()),
    }
}

fn kinds(p: &Plan) -> Vec<(String, ChangeKind)> {
    p.changes.iter().map(|c| (c.name.clone(), c.kind)).collect()
}

#[test]
fn create_shows_the_whole_blueprint_as_added() {
    let p = plan(&[desired(bp("a", ""))], &[], &PlanOptions::default()).unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Create)]);
    let text = render_human(&p, None, false);
    let expected = "\
+ create a (v1)
    not deployed yet

    --- deployed/a
    +++ desired/a
    @@ -0,0 +1,7 @@
    +apiVersion: nemoclaw.dev/v1
    +kind: Blueprint
    +metadata:
    +  name: a
    +  version: 1
    +agent:
    +  type: demo

Plan: 1 to create, 0 to update, 0 to upgrade, 0 to replace, 0 to destroy.
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn no_changes_when_everything_matches() {
    let b = bp("a", "");
    let d = deployed(b.clone());
    let live = running(&d);
    let p = plan(&[desired(b)], &[(d, live)], &PlanOptions::default()).unwrap();
    assert!(!p.has_changes());
    assert_eq!(
        render_human(&p, None, false),
        "No changes. Sandboxes match the blueprints.\n"
    );
}

#[test]
fn network_change_is_an_update_in_place_with_a_diff() {
    let old = deployed(bp(
        "a",
        "network:\n  egress:\n    allowedDomains: [api.github.com]\n",
    ));
    let live = running(&old);
    let new = bp(
        "a",
        "network:\n  egress:\n    allowedDomains: [api.github.com, pypi.org]\n",
    );
    let p = plan(&[desired(new)], &[(old, live)], &PlanOptions::default()).unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Update)]);
    let text = render_human(&p, None, false);
    assert!(text.starts_with("~ update a in place (hot reload, no restart)\n    network.egress.allowedDomains changed\n"), "{text}");
    assert!(text.contains("    +    - pypi.org\n"), "{text}");
    assert!(
        text.ends_with(
            "Plan: 0 to create, 1 to update, 0 to upgrade, 0 to replace, 0 to destroy.\n"
        ),
        "{text}"
    );
}

#[test]
fn resource_change_is_a_replace_naming_the_field() {
    let old = deployed(bp("a", "resources:\n  memory: 256Mi\n"));
    let live = running(&old);
    let new = bp(
        "a",
        "resources:\n  memory: 512Mi\nnetwork:\n  egress:\n    allowedDomains: [pypi.org]\n",
    );
    let p = plan(&[desired(new)], &[(old, live)], &PlanOptions::default()).unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Replace)]);
    assert_eq!(
        p.changes[0].reasons,
        [
            "resources.memory changed (needs a restart)",
            "network.egress.allowedDomains changed"
        ]
    );
    let text = render_human(&p, None, false);
    assert!(text.starts_with("-/+ replace a (restart)\n"), "{text}");
    assert!(
        text.contains("    -  memory: 256Mi\n    +  memory: 512Mi\n"),
        "{text}"
    );
}

#[test]
fn version_bump_is_an_upgrade_that_names_its_migrations_and_downgrades_are_refused() {
    let old = deployed(bp("a", ""));
    let live = running(&old);
    let mut new = bp("a", "");
    new.metadata.version = 3;
    let p = plan(
        &[desired(new.clone())],
        &[(old.clone(), live.clone())],
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Upgrade)]);
    assert_eq!(p.changes[0].migration, None);
    assert!(render_human(&p, None, false).starts_with("~ upgrade a v1→v3\n    version 1 → 3\n"));
    // Only the steps between the deployed and the desired version run, in order.
    let with_scripts = DesiredEntry {
        blueprint: new,
        migration_steps: vec![1, 3, 2, 4],
        plugin_hash: None,
    };
    let p = plan(
        &[with_scripts],
        &[(old.clone(), live.clone())],
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Upgrade)]);
    let m = p.changes[0].migration.as_ref().unwrap();
    assert_eq!(m.steps, [2, 3]);
    assert!(
        p.changes[0].reasons[1].contains("state migrations v2.rhai, v3.rhai"),
        "{:?}",
        p.changes[0].reasons
    );
    let text = render_human(&p, None, false);
    assert!(
        text.ends_with(
            "Plan: 0 to create, 0 to update, 1 to upgrade, 0 to replace, 0 to destroy.\n"
        ),
        "{text}"
    );
    // A downgrade is refused.
    let mut newer = old.clone();
    newer.version = 3;
    newer.blueprint.metadata.version = 3;
    newer.hash = blueprint_hash(&newer.blueprint);
    let p = plan(
        &[desired(bp("a", ""))],
        &[(newer, live)],
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Refused)]);
    assert!(p.changes[0].reasons[0].contains("downgrades are not supported"));
}

fn held(kind: super::inventory::HoldKind, desired: &Blueprint) -> Deployed {
    let mut rec = deployed(bp("a", ""));
    rec.hold = Some(super::inventory::Hold {
        kind,
        desired_hash: blueprint_hash(desired),
        to_version: desired.metadata.version,
        message: "upgrade to v2 failed and was rolled back (boom)".into(),
        at: 0,
    });
    rec
}

#[test]
fn a_failed_upgrade_is_held_until_the_blueprint_changes_or_a_retry() {
    use super::inventory::HoldKind;
    let mut v2 = bp("a", "");
    v2.metadata.version = 2;
    let rec = held(HoldKind::UpgradeFailed, &v2);
    let live = running(&rec);
    let actual = [(rec.clone(), live)];
    let p = plan(&[desired(v2.clone())], &actual, &PlanOptions::default()).unwrap();
    assert!(!p.has_changes(), "{p:?}");
    assert_eq!(p.notes[0].kind, NoteKind::UpgradeFailed);
    assert!(render_human(&p, None, false).contains("Left alone:\n    a: upgrade to v2 failed"));
    let retry = PlanOptions {
        retry: vec!["a".into()],
        ..Default::default()
    };
    let p = plan(&[desired(v2.clone())], &actual, &retry).unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Upgrade)]);
    let mut fixed = v2.clone();
    fixed.network.egress.allowed_domains =
        vec![crate::blueprint::DomainRule::Name("pypi.org".into())];
    let p = plan(&[desired(fixed)], &actual, &PlanOptions::default()).unwrap();
    assert_eq!(
        kinds(&p),
        [("a".into(), ChangeKind::Upgrade)],
        "a changed blueprint ends the hold"
    );
    // A held sandbox that died is still brought back, at its recorded version.
    let down = [(rec, Live::Down)];
    let p = plan(&[desired(v2)], &down, &PlanOptions::default()).unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Restart)]);
    assert_eq!(p.changes[0].to_version, Some(1));
}

#[test]
fn a_rollback_by_the_user_is_left_alone() {
    use super::inventory::HoldKind;
    let mut v2 = bp("a", "");
    v2.metadata.version = 2;
    let rec = held(HoldKind::RolledBack, &v2);
    let live = running(&rec);
    let p = plan(&[desired(v2)], &[(rec, live)], &PlanOptions::default()).unwrap();
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].kind, NoteKind::RolledBack);
}

#[test]
fn destroy_only_when_pruning_and_never_everything_by_accident() {
    let gone = deployed(bp("gone", ""));
    let live = running(&gone);
    let keep = plan(
        &[],
        &[(gone.clone(), live.clone())],
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(!keep.has_changes());
    assert_eq!(keep.notes[0].kind, NoteKind::NotInSource);
    let err = plan(
        &[],
        &[(gone.clone(), live.clone())],
        &PlanOptions {
            prune: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err, PlanError::EmptySource { deployed: 1 });
    let p = plan(
        &[],
        &[(gone.clone(), live.clone())],
        &PlanOptions {
            prune: true,
            allow_empty: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(kinds(&p), [("gone".into(), ChangeKind::Destroy)]);
    let other = desired(bp("other", ""));
    let p = plan(
        &[other],
        &[(gone, live)],
        &PlanOptions {
            prune: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        kinds(&p),
        [
            ("other".into(), ChangeKind::Create),
            ("gone".into(), ChangeKind::Destroy)
        ]
    );
    let text = render_human(&p, None, false);
    assert!(
        text.contains("- destroy gone\n    its blueprint is gone from the source (prune)\n"),
        "{text}"
    );
}

#[test]
fn drift_restarts_unless_told_not_to() {
    let b = bp("a", "");
    let d = deployed(b.clone());
    let p = plan(
        &[desired(b.clone())],
        &[(d.clone(), Live::Down)],
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Restart)]);
    assert!(
        render_human(&p, None, false).starts_with("! restart a\n    the supervisor is not running")
    );
    let other_hash = Live::Running {
        healthy: Some(true),
        hash: Some("sha256:other".into()),
    };
    let p = plan(&[desired(b)], &[(d, other_hash)], &PlanOptions::default()).unwrap();
    assert!(p.changes[0].reasons[0].contains("changed outside nemoclaw"));
    let calm = bp("a", "lifecycle:\n  restartOnDrift: false\n");
    let d = deployed(calm.clone());
    let p = plan(
        &[desired(calm)],
        &[(d, Live::Down)],
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].kind, NoteKind::Drifted);
}

#[test]
fn stopped_and_given_up_sandboxes_are_left_alone_until_asked() {
    let b = bp("a", "");
    let mut d = deployed(b.clone());
    d.stopped = true;
    let p = plan(
        &[desired(b.clone())],
        &[(d.clone(), Live::Down)],
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].kind, NoteKind::StoppedByUser);
    let p = plan(
        &[desired(b.clone())],
        &[(d, Live::Down)],
        &PlanOptions {
            replace: vec!["a".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Replace)]);
    assert!(!p.changes[0].stays_stopped);
    let d = deployed(b.clone());
    let p = plan(
        &[desired(b)],
        &[(d, Live::GaveUp { crashes: 5 })],
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(!p.has_changes());
    assert!(p.notes[0].message.contains("gave up after 5 crashes"));
}

#[test]
fn suspended_blueprints_are_not_touched() {
    let b = bp("a", "suspend: true\n");
    let p = plan(&[desired(b.clone())], &[], &PlanOptions::default()).unwrap();
    assert!(!p.has_changes());
    let d = deployed(bp("a", "resources:\n  memory: 1Gi\n"));
    let p = plan(&[desired(b)], &[(d, Live::Down)], &PlanOptions::default()).unwrap();
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].kind, NoteKind::Suspended);
}

#[test]
fn dependencies_come_first_and_targets_limit_the_plan() {
    let web = bp("web", "dependsOn: [db]\n");
    let db = bp("db", "dependsOn: [cache]\n");
    let cache = bp("cache", "");
    let all = [desired(web), desired(db), desired(cache)];
    let p = plan(&all, &[], &PlanOptions::default()).unwrap();
    let order: Vec<&str> = p.changes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(order, ["cache", "db", "web"]);
    let p = plan(
        &all,
        &[],
        &PlanOptions {
            targets: vec!["db".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(kinds(&p), [("db".into(), ChangeKind::Create)]);
    assert_eq!(
        plan(
            &all,
            &[],
            &PlanOptions {
                targets: vec!["nope".into()],
                ..Default::default()
            }
        )
        .unwrap_err(),
        PlanError::UnknownTarget("nope".into())
    );
}

#[test]
fn diffs_never_carry_secrets() {
    let b = bp("a", "inference:\n  backends:\n    - name: nim\n      kind: openai\n      url: https://x.example.com/v1\n      apiKey: {env: NVIDIA_API_KEY}\n  allowedModels: [m]\n");
    let p = plan(&[desired(b)], &[], &PlanOptions::default()).unwrap();
    let text = render_human(&p, None, false);
    assert!(text.contains("env: NVIDIA_API_KEY"), "{text}");
}

#[test]
fn presets_are_shown_expanded() {
    let p = plan(
        &[desired(bp(
            "a",
            "network:\n  egress:\n    presets: [npm, internal]\n",
        ))],
        &[],
        &PlanOptions::default(),
    )
    .unwrap();
    let text = render_human(&p, None, false);
    assert!(
        text.contains("    egress presets: npm = registry.npmjs.org, registry.yarnpkg.com; internal = (user preset, presets/internal.yaml)\n"),
        "{text}"
    );
}

#[test]
fn dns_ingress_and_a_new_inference_section_need_a_restart() {
    for (old, new) in [
        ("", "network:\n  dns:\n    resolver: none\n"),
        (
            "",
            "network:\n  ingress:\n    - {hostPort: 18789, port: 8080}\n",
        ),
        (
            "",
            "inference:\n  backends: [{name: m, kind: mock}]\n  allowedModels: [m]\n",
        ),
    ] {
        let d = deployed(bp("a", old));
        let live = running(&d);
        let p = plan(
            &[desired(bp("a", new))],
            &[(d, live)],
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(
            kinds(&p),
            [("a".into(), ChangeKind::Replace)],
            "{new}: {:?}",
            p.changes[0].reasons
        );
    }
    // Egress domains and inference limits stay in place.
    let d = deployed(bp(
        "a",
        "inference:\n  backends: [{name: m, kind: mock}]\n  allowedModels: [m]\n",
    ));
    let live = running(&d);
    let new = bp("a", "inference:\n  backends: [{name: m, kind: mock}]\n  allowedModels: [m]\n  limits:\n    maxTokens: 64\n");
    let p = plan(&[desired(new)], &[(d, live)], &PlanOptions::default()).unwrap();
    assert_eq!(kinds(&p), [("a".into(), ChangeKind::Update)]);
}

#[test]
fn a_changed_plugin_replaces_an_otherwise_unchanged_sandbox() {
    let b = bp("p1", "");
    let rec = Deployed {
        plugin_hash: Some("old".into()),
        ..deployed(b.clone())
    };
    let actual = vec![(rec.clone(), running(&rec))];
    let same = DesiredEntry {
        plugin_hash: Some("old".into()),
        ..desired(b.clone())
    };
    let p = plan(&[same], &actual, &PlanOptions::default()).unwrap();
    assert!(p.changes.is_empty(), "{:?}", kinds(&p));
    let changed = DesiredEntry {
        plugin_hash: Some("new".into()),
        ..desired(b.clone())
    };
    let p = plan(&[changed], &actual, &PlanOptions::default()).unwrap();
    assert_eq!(kinds(&p), vec![("p1".to_string(), ChangeKind::Replace)]);
    assert!(
        p.changes[0].reasons[0].contains("plugin `demo` changed"),
        "{:?}",
        p.changes[0].reasons
    );
    // A record from before plugins has no hash: nothing to compare, no churn.
    let old_rec = deployed(b.clone());
    let actual = vec![(old_rec.clone(), running(&old_rec))];
    let p = plan(
        &[DesiredEntry {
            plugin_hash: Some("new".into()),
            ..desired(b)
        }],
        &actual,
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(p.changes.is_empty());
}
