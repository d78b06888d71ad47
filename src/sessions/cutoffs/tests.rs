use super::*;

use crate::store::Preserved;

fn claims<'a>(workspace: &'a str, sub: &'a str, time: f64, id: &'a str) -> Session<'a> {
    Session {
        workspace,
        user: Some(sub),
        user_folded: None,
        sid: None,
        id,
        time,
    }
}

fn cutoff(valid_after: i64, preserved: Option<&str>, version: u64) -> Cutoff {
    let preserved = preserved.map(|id| Preserved {
        session_id: id.into(),
        expires_at: f64::MAX,
    });
    Cutoff {
        valid_after,
        preserved,
        version,
    }
}

#[test]
fn workspace_cutoff_refuses_earlier_sessions_but_the_preserved_one() {
    let sessions = Cutoffs::default();
    sessions.apply(
        &Scope::Workspace("acme".into()),
        cutoff(1000, Some("jti:admin"), 1),
    );
    assert_eq!(
        sessions.check(&claims("acme", "u", 999.999, "jti:u"), 0.0),
        Err(Refusal::Invalidated)
    );
    assert_eq!(
        sessions.check(&claims("acme", "u", 1000.0, "jti:u"), 0.0),
        Ok(())
    );
    assert_eq!(
        sessions.check(&claims("acme", "a", 10.0, "jti:admin"), 0.0),
        Ok(())
    );
    assert_eq!(
        sessions.check(&claims("other", "u", 10.0, "jti:u"), 0.0),
        Ok(())
    );
}

#[test]
fn user_cutoff_is_checked_after_the_workspace_cutoff() {
    let sessions = Cutoffs::default();
    let user = Scope::User {
        workspace: "acme".into(),
        subject: "bob".into(),
    };
    sessions.apply(&user, cutoff(2000, None, 1));
    assert_eq!(
        sessions.check(&claims("acme", "bob", 1500.0, "jti:b"), 0.0),
        Err(Refusal::Revoked)
    );
    assert_eq!(
        sessions.check(&claims("acme", "carol", 1500.0, "jti:c"), 0.0),
        Ok(())
    );
    sessions.apply(&Scope::Workspace("acme".into()), cutoff(1800, None, 1));
    assert_eq!(
        sessions.check(&claims("acme", "bob", 1500.0, "jti:b"), 0.0),
        Err(Refusal::Invalidated)
    );
    assert_eq!(
        sessions.check(&claims("acme", "bob", 1900.0, "jti:b"), 0.0),
        Err(Refusal::Revoked)
    );
    assert_eq!(
        sessions.check(&claims("acme", "bob", 2000.0, "jti:b"), 0.0),
        Ok(())
    );
}

#[test]
fn older_versions_never_replace_newer_ones() {
    let sessions = Cutoffs::default();
    let scope = Scope::Workspace("acme".into());
    sessions.apply(&scope, cutoff(3000, Some("jti:second"), 2));
    sessions.apply(&scope, cutoff(2000, Some("jti:first"), 1));
    assert_eq!(
        sessions.get(&scope),
        Some(cutoff(3000, Some("jti:second"), 2))
    );
    let user = Scope::User {
        workspace: "acme".into(),
        subject: "bob".into(),
    };
    sessions.apply(&user, cutoff(3000, None, 5));
    sessions.apply(&user, cutoff(1000, None, 4));
    assert_eq!(sessions.get(&user).map(|c| c.valid_after), Some(3000));
    let everywhere = Scope::Subject("bob".into());
    assert!(sessions.apply(&everywhere, cutoff(3000, None, 7)));
    assert!(!sessions.apply(&everywhere, cutoff(3000, None, 6)));
    assert_eq!(sessions.get(&everywhere).map(|c| c.version), Some(7));
}

#[test]
fn every_cutoff_held_is_visited_with_its_rank() {
    let sessions = Cutoffs::default();
    let scopes = [
        Scope::Workspace("acme".into()),
        Scope::User {
            workspace: "acme".into(),
            subject: "bob".into(),
        },
        Scope::Subject("carol".into()),
    ];
    for (i, scope) in scopes.iter().enumerate() {
        sessions.apply(scope, cutoff(1000 + i as i64, None, 3));
    }
    let mut visited = Vec::new();
    sessions.for_each(|record| visited.push(record));
    assert_eq!(visited.len(), 3);
    for record in visited {
        let Record::Cutoff { scope, cutoff } = record else {
            panic!("a cutoff: {record:?}");
        };
        assert_eq!(sessions.rank(&scope), Some(cutoff.rank()));
    }
    assert_eq!(sessions.rank(&Scope::Workspace("other".into())), None);
}

#[test]
fn a_newer_version_of_a_lower_cutoff_never_lowers_it() {
    // A store that lost data assigns new versions to lower values.
    let sessions = Cutoffs::default();
    let scope = Scope::Workspace("acme".into());
    assert!(sessions.apply(&scope, cutoff(3000, None, 5)));
    assert!(!sessions.apply(&scope, cutoff(2000, None, 9)));
    assert!(sessions.apply(&scope, cutoff(3000, Some("jti:later"), 6)));
    assert_eq!(
        sessions.get(&scope),
        Some(cutoff(3000, Some("jti:later"), 6))
    );
}

#[test]
fn subject_wide_cutoff_applies_in_every_workspace_and_spares_no_session() {
    let sessions = Cutoffs::default();
    sessions.apply(&Scope::Subject("bob".into()), cutoff(2000, None, 1));
    for workspace in ["acme", "globex"] {
        assert_eq!(
            sessions.check(&claims(workspace, "bob", 1999.0, "jti:b"), 0.0),
            Err(Refusal::Revoked)
        );
        assert_eq!(
            sessions.check(&claims(workspace, "bob", 2000.0, "jti:b"), 0.0),
            Ok(())
        );
    }
    assert_eq!(
        sessions.check(&claims("acme", "carol", 10.0, "jti:c"), 0.0),
        Ok(())
    );
}

#[test]
fn an_address_is_found_by_its_folded_form() {
    let sessions = Cutoffs::default();
    sessions.apply(
        &Scope::Subject("bob@example.com".into()),
        cutoff(2000, None, 1),
    );
    let mut session = claims("acme", "Bob@Example.com", 1500.0, "jti:b");
    assert_eq!(sessions.check(&session, 0.0), Ok(()), "exact names differ");
    session.user_folded = Some("bob@example.com");
    assert_eq!(sessions.check(&session, 0.0), Err(Refusal::Revoked));
}

fn user_scope(workspace: &str, subject: &str) -> Scope {
    Scope::User {
        workspace: workspace.into(),
        subject: subject.into(),
    }
}

#[test]
fn the_preserved_session_passes_until_its_token_expires() {
    let sessions = Cutoffs::default();
    let mut spared = cutoff(1000, Some("jti:admin"), 1);
    spared.preserved.as_mut().unwrap().expires_at = 5000.0;
    sessions.apply(&user_scope("acme", "bob"), spared.clone());
    sessions.apply(&Scope::Workspace("acme".into()), spared);
    let admin = claims("acme", "bob", 10.0, "jti:admin");
    assert_eq!(sessions.check(&admin, 4999.0), Ok(()));
    assert_eq!(sessions.check(&admin, 5000.0), Err(Refusal::Invalidated));
    let other = claims("acme", "bob", 10.0, "jti:admin2");
    assert_eq!(sessions.check(&other, 0.0), Err(Refusal::Invalidated));
}

#[test]
fn a_user_cutoff_is_found_by_the_folded_name_in_its_workspace_only() {
    let sessions = Cutoffs::default();
    sessions.apply(
        &user_scope("acme", "bob@example.com"),
        cutoff(2000, None, 1),
    );
    let mut session = claims("acme", "Bob@Example.com", 1500.0, "jti:b");
    session.user_folded = Some("bob@example.com");
    assert_eq!(sessions.check(&session, 0.0), Err(Refusal::Revoked));
    session.workspace = "globex";
    assert_eq!(sessions.check(&session, 0.0), Ok(()));
}

#[test]
fn a_workspace_known_only_by_its_users_has_no_cutoff() {
    let sessions = Cutoffs::default();
    sessions.apply(&user_scope("acme", "bob"), cutoff(2000, None, 4));
    let workspace = Scope::Workspace("acme".into());
    assert_eq!(sessions.get(&workspace), None);
    assert_eq!(sessions.rank(&workspace), None);
    assert_eq!(sessions.workspace_version("acme"), 0);
    assert_eq!(
        sessions.check(&claims("acme", "carol", 10.0, "jti:c"), 0.0),
        Ok(())
    );
    let mut visited = Vec::new();
    sessions.for_each(|record| visited.push(record));
    let expected = Record::Cutoff {
        scope: user_scope("acme", "bob"),
        cutoff: cutoff(2000, None, 4),
    };
    assert_eq!(visited, [expected]);
    assert!(sessions.apply(&workspace, cutoff(1000, None, 1)));
    assert_eq!(sessions.workspace_version("acme"), 1);
}

#[test]
fn replacing_a_cutoff_keeps_one_entry() {
    let sessions = Cutoffs::default();
    let scopes = [
        Scope::Workspace("acme".into()),
        user_scope("acme", "bob"),
        Scope::Subject("bob".into()),
    ];
    for version in 1..=3 {
        for scope in &scopes {
            let preserved = format!("jti:{version}");
            let newer = cutoff(1000 * version as i64, Some(&preserved), version);
            assert!(sessions.apply(scope, newer.clone()));
            assert!(!sessions.apply(scope, newer), "the same rank again");
        }
    }
    let tables = [&sessions.workspaces, &sessions.users, &sessions.subjects];
    assert_eq!(tables.map(Table::len), [1, 1, 1]);
    for scope in &scopes {
        assert_eq!(sessions.get(scope), Some(cutoff(3000, Some("jti:3"), 3)));
    }
}

#[test]
fn many_workspaces_and_users_share_the_tables() {
    let sessions = Cutoffs::default();
    for i in 0..5000 {
        let (workspace, subject) = (format!("ws-{i}"), format!("user-{}", i % 7));
        sessions.apply(&Scope::Workspace(workspace.clone()), cutoff(i, None, 1));
        let preserved = format!("jti:{i}");
        let own = cutoff(10_000 + i, Some(&preserved), 2);
        sessions.apply(&user_scope(&workspace, &subject), own);
    }
    assert_eq!(sessions.workspaces.len(), 5000);
    assert_eq!(sessions.users.len(), 5000);
    for i in [0, 1, 2500, 4999] {
        let (workspace, subject) = (format!("ws-{i}"), format!("user-{}", i % 7));
        let scope = user_scope(&workspace, &subject);
        let preserved = format!("jti:{i}");
        assert_eq!(
            sessions.get(&scope),
            Some(cutoff(10_000 + i, Some(&preserved), 2))
        );
        let time = 10_000.0 + i as f64;
        let session = claims(&workspace, &subject, time - 0.5, "jti:x");
        assert_eq!(sessions.check(&session, 0.0), Err(Refusal::Revoked));
        let spared = claims(&workspace, &subject, time - 0.5, &preserved);
        assert_eq!(sessions.check(&spared, 0.0), Ok(()));
        let other = claims(&workspace, "user-x", time - 0.5, "jti:x");
        assert_eq!(sessions.check(&other, 0.0), Ok(()));
    }
    let mut count = 0;
    sessions.for_each(|record| {
        assert_eq!(sessions.rank(&scope_of(&record)), Some(record.rank()));
        count += 1;
    });
    assert_eq!(count, 10_000);
}

fn scope_of(record: &Record) -> Scope {
    match record {
        Record::Cutoff { scope, .. } => scope.clone(),
        other => panic!("a cutoff: {other:?}"),
    }
}

#[test]
fn a_resync_finds_the_cutoffs_it_did_not_mark_in_every_table() {
    let sessions = Cutoffs::default();
    // The first entry of each table may share an id with another table's: marks keep
    // the tables apart.
    let found = [
        Scope::Workspace("acme".into()),
        user_scope("globex", "dave"),
        Scope::Subject("erin".into()),
    ];
    let lost = [
        user_scope("acme", "bob"),
        Scope::Workspace("globex".into()),
        Scope::Subject("carol".into()),
    ];
    for (i, scope) in found.iter().chain(&lost).enumerate() {
        sessions.apply(scope, cutoff(1000 + i as i64, None, 1));
    }
    // Enough entries for ids past the first word of a table's bits.
    let many: Vec<Scope> = (0..500)
        .map(|i| Scope::Workspace(format!("ws-{i}")))
        .collect();
    for scope in &many {
        sessions.apply(scope, cutoff(1, None, 1));
    }

    let mut marks = Marks::default();
    found
        .iter()
        .chain(&many)
        .for_each(|scope| sessions.mark(scope, &mut marks));
    let mut unmarked = Vec::new();
    sessions.for_each_unmarked(&marks, |record| unmarked.push(record));

    let mut scopes: Vec<Scope> = unmarked.iter().map(scope_of).collect();
    scopes.sort_by_key(|scope| format!("{scope:?}"));
    let mut expected = lost.to_vec();
    expected.sort_by_key(|scope| format!("{scope:?}"));
    assert_eq!(scopes, expected);
    for record in &unmarked {
        assert_eq!(sessions.rank(&scope_of(record)), Some(record.rank()));
    }
}

#[test]
fn marking_a_key_memory_lacks_adds_no_cutoff() {
    let sessions = Cutoffs::default();
    let scope = user_scope("acme", "bob");
    let mut marks = Marks::default();
    sessions.mark(&scope, &mut marks);

    assert_eq!(sessions.get(&scope), None);
    assert_eq!(
        sessions.check(&claims("acme", "bob", 1.0, "jti:b"), 0.0),
        Ok(())
    );
    let mut unmarked = 0;
    sessions.for_each_unmarked(&Marks::default(), |_| unmarked += 1);
    assert_eq!(unmarked, 0, "an entry holding no cutoff is no record");
    // The store's record, installed next, lands in the entry marked.
    assert!(sessions.apply(&scope, cutoff(1000, None, 1)));
    sessions.for_each_unmarked(&marks, |_| unmarked += 1);
    assert_eq!(unmarked, 0);
}

#[test]
fn room_reserved_for_a_load_takes_it_without_growing() {
    let sessions = Cutoffs::default();
    let workspace = |i: usize| Scope::Workspace(format!("ws-{i}"));
    // Some held before the reserve (a resync's case): they are moved, not lost.
    for i in 0..100 {
        sessions.apply(&workspace(i), cutoff(1, None, 1));
    }
    let counts = CutoffCounts {
        workspaces: 20_000,
        users: 5_000,
        subjects: 0,
    };
    sessions.reserve(counts);
    let room = sessions.workspaces.capacity();
    assert!(room >= counts.workspaces, "room for {room} only");
    assert!(sessions.users.capacity() >= counts.users);

    for i in 100..counts.workspaces {
        sessions.apply(&workspace(i), cutoff(i as i64, None, 1));
    }
    assert_eq!(
        sessions.workspaces.capacity(),
        room,
        "no shard's index grew"
    );
    for i in (0..counts.workspaces).step_by(97) {
        let held = sessions.get(&workspace(i)).map(|c| c.valid_after);
        let expected = if i < 100 { 1 } else { i as i64 };
        assert_eq!(held, Some(expected), "ws-{i}");
    }
    sessions.reserve(counts);
    assert_eq!(
        sessions.workspaces.capacity(),
        room,
        "room made once is kept"
    );
}
