//! The operator's admin client and ReplicationGroup planner against three
//! real node processes: a planned group is created with its members and
//! context, a member's role moves PRIMARY → PASSIVE_BACKUP → PRIMARY in
//! place with its writes kept, the status read back follows, and a plan
//! that would lose the primaries' majority while a node is down is refused
//! with nothing applied; the group's own min-active-backups is set and read
//! back. Refusals of the node arrive as Axon codes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ranvier_operator::admin_client::{AdminClient, AdminError};
use ranvier_operator::controllers::replication_group::plan::{Call, Desired, Refused, plan, reachable};
use ranvier_tests::{event, eventually, in_context, start_cluster};
use ranvier_wire::Role;
use ranvier_wire::admin::{GroupStatus, RaftMembership};

const GROUP: &str = "orders";

async fn apply(client: &AdminClient, calls: &[Call]) {
    for call in calls {
        match call {
            Call::CreateGroup { members } => {
                let members: Vec<(String, Role)> = members.iter().map(|(n, r)| (n.clone(), *r)).collect();
                client.create_group(GROUP, &members).await.unwrap();
            }
            Call::CreateContext(context) => client.create_context(context, GROUP).await.unwrap(),
            Call::SetRole { node, role } => client.set_role(GROUP, node, *role).await.unwrap(),
            Call::Remove(node) => client.remove(GROUP, node).await.unwrap(),
            Call::SetMinActiveBackups(n) => client.set_min_active_backups(GROUP, *n).await.unwrap(),
        }
    }
}

/// The spec's `members` and `contexts`, leaving min-active-backups to the
/// nodes.
fn wanted<'a>(members: &'a BTreeMap<String, Role>, contexts: &'a [String]) -> Desired<'a> {
    Desired { members, contexts, min_active_backups: None }
}

/// The group as its leader reports it, once it has a leader, its members
/// have the `expected` roles, and each is in its role's Raft shape and
/// caught up in the leader's view.
async fn settled(addresses: &[String], expected: &BTreeMap<String, Role>) -> GroupStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for address in addresses {
            let Ok(groups) = AdminClient::new(address.clone()).groups().await else { continue };
            let Some(group) = groups.into_iter().find(|g| g.name == GROUP) else { continue };
            let Some(leader) = group.leader.clone() else { continue };
            let ready = group.members.iter().all(|m| {
                let shaped = match m.role {
                    Role::Primary => m.raft == Some(RaftMembership::Voter),
                    _ => m.raft.is_some_and(|r| r != RaftMembership::None),
                };
                shaped && (m.node == leader || m.lag.is_some_and(|lag| lag == 0))
            });
            let roles: BTreeMap<String, Role> = group.roles.iter().map(|m| (m.node.clone(), m.role)).collect();
            if ready && roles == *expected {
                return group;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the group did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The group as its leader (among the nodes at `addresses`) reports it
/// once the leader no longer counts `down` as reachable.
async fn leader_view_without(addresses: &[String], down: &str) -> GroupStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for address in addresses {
            if let Ok(groups) = AdminClient::new(address.clone()).groups().await
                && let Some(group) = groups.into_iter().find(|g| g.name == GROUP)
                && group.members.iter().any(|m| m.lag.is_some())
                && !reachable(&group).contains(down)
            {
                return group;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader stopped counting {down}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn roles(members: &[(&str, Role)]) -> BTreeMap<String, Role> {
    members.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_role_changes_take_effect_in_place_and_an_unsafe_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]).unwrap();
    let names: Vec<String> = nodes.iter().map(|n| n.name().to_owned()).collect();
    let addresses: Vec<String> = nodes.iter().map(|n| n.http_addr.clone()).collect();
    let client = AdminClient::new(nodes[0].http_addr.clone());
    eventually(Duration::from_secs(30), "every node to be a voter of default", || async {
        client.groups().await.is_ok_and(|groups| {
            groups.iter().any(|g| {
                g.name == "default"
                    && g.members.len() == 3
                    && g.members.iter().all(|m| m.raft == Some(RaftMembership::Voter))
            })
        })
    })
    .await
    .unwrap();

    // A new group: created with its three primaries, then its context.
    let all_primary = roles(&[(&names[0], Role::Primary), (&names[1], Role::Primary), (&names[2], Role::Primary)]);
    let up: BTreeSet<String> = names.iter().cloned().collect();
    let contexts = [GROUP.to_owned()];
    let calls = plan(None, &wanted(&all_primary, &contexts), &up).unwrap();
    apply(&client, &calls).await;
    let status = settled(&addresses, &all_primary).await;
    assert_eq!(status.contexts, [GROUP]);
    let mut writer = nodes[0].event_store().await.unwrap();
    writer.append_event(in_context(tokio_stream::iter(vec![event("o", 0, 32)]), GROUP)).await.unwrap();

    // PRIMARY → PASSIVE_BACKUP → PRIMARY, each one call, read back.
    let mut before = all_primary.clone();
    for (step, role) in [(1, Role::PassiveBackup), (2, Role::Primary)] {
        let desired = roles(&[(&names[0], Role::Primary), (&names[1], Role::Primary), (&names[2], role)]);
        let current = settled(&addresses, &before).await;
        let calls = plan(Some(&current), &wanted(&desired, &contexts), &reachable(&current)).unwrap();
        assert_eq!(calls, [Call::SetRole { node: names[2].clone(), role }]);
        apply(&client, &calls).await;
        let after = settled(&addresses, &desired).await;
        before = desired.clone();
        let member = after.members.iter().find(|m| m.node == names[2]).unwrap();
        assert_eq!(member.role, role, "the status follows the change");
        // A write while leadership moves may be refused with AXONIQ-2100
        // (nothing stored); taken on a retry, it must not conflict.
        eventually(Duration::from_secs(10), "the write after the role change to be taken", || {
            let mut writer = writer.clone();
            async move {
                let batch = in_context(tokio_stream::iter(vec![event("o", step, 32)]), GROUP);
                match writer.append_event(batch).await {
                    Ok(_) => true,
                    Err(status) => {
                        assert_eq!(ranvier_tests::error_code(&status).as_deref(), Some("AXONIQ-2100"), "{status:?}");
                        false
                    }
                }
            }
        })
        .await
        .unwrap();
    }

    // The group's own min-active-backups: one call, read back from the
    // cluster; once set, nothing more to do.
    let current = settled(&addresses, &all_primary).await;
    assert_eq!(current.min_active_backups, None);
    let guarded = Desired { members: &all_primary, contexts: &contexts, min_active_backups: Some(0) };
    let calls = plan(Some(&current), &guarded, &reachable(&current)).unwrap();
    assert_eq!(calls, [Call::SetMinActiveBackups(Some(0))]);
    apply(&client, &calls).await;
    let current = settled(&addresses, &all_primary).await;
    assert_eq!(current.min_active_backups, Some(0), "read back from the cluster");
    assert_eq!(plan(Some(&current), &guarded, &reachable(&current)).unwrap(), []);

    // With node 3 down, demoting node 2 would leave 1 of 2 primaries up:
    // refused before any call.
    nodes[2].kill9().unwrap();
    let current = leader_view_without(&addresses[..2], &names[2]).await;
    let unsafe_change =
        roles(&[(&names[0], Role::Primary), (&names[1], Role::PassiveBackup), (&names[2], Role::Primary)]);
    let refused = plan(Some(&current), &wanted(&unsafe_change, &contexts), &reachable(&current)).unwrap_err();
    assert!(matches!(refused, Refused::NoMajority { reachable: 1, primaries: 2, .. }), "{refused}");
    let unchanged = client.groups().await.unwrap().into_iter().find(|g| g.name == GROUP).unwrap();
    assert_eq!(unchanged.roles.iter().filter(|m| m.role == Role::Primary).count(), 3);

    // The node's own refusals arrive as Axon codes.
    let error = client.set_role("no-such-group", &names[0], Role::Primary).await.unwrap_err();
    assert!(matches!(&error, AdminError::Refused { code, .. } if code.starts_with("AXONIQ-")), "{error}");
    let unreachable = AdminClient::new("127.0.0.1:1").groups().await.unwrap_err();
    assert!(matches!(unreachable, AdminError::Unreachable { .. }), "{unreachable}");
}
