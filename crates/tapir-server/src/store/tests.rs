//! The store against a real SQLite file: journals, log-ons, routes, restarts.

use super::*;

fn limits(events: usize) -> Limits {
    Limits {
        events_per_logon: events,
        max_age: Duration::from_secs(3600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_and_route_changes_survive_reopening_and_are_bounded() {
    let dir = std::env::temp_dir().join(format!("tapir-store-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = Store::open(Some(&dir), limits(3)).expect("open");
        let id = store.logon("tok", "alice", "s-1").await.expect("logon");
        store.append(id, vec![(1, "{\"seq\":1}".into())]).await;
        let batch = (2..=5)
            .map(|seq| (seq, format!("{{\"seq\":{seq}}}").into()))
            .collect();
        store.append(id, batch).await;
        store
            .route_changed(RouteChange {
                class: "voice".into(),
                application: Some("alice".into()),
            })
            .await
            .expect("route");
        store
            .route_changed(RouteChange {
                class: "data".into(),
                application: None,
            })
            .await
            .expect("route");
        store
            .default_route_changed("reject")
            .await
            .expect("default");
        store.flush().await;
        assert_eq!(store.queued(), 0, "every queued event written");
    }
    let store = Store::open(Some(&dir), limits(3)).expect("reopen");
    let found = store.find("tok").await.expect("find").expect("known");
    assert_eq!(found.end_reason.as_deref(), Some("restart"));
    assert_eq!(
        store.read_after(found.id, 0, 10).await.expect("read"),
        Read::Trimmed { first_kept: 3 },
        "three kept of five"
    );
    assert_eq!(
        store.read_after(found.id, 3, 10).await.expect("read"),
        Read::Events(vec![(4, "{\"seq\":4}".into()), (5, "{\"seq\":5}".into())])
    );
    assert_eq!(
        store.read_after(found.id, 5, 10).await.expect("read"),
        Read::Events(vec![])
    );
    let (changes, default) = store.routes().await.expect("routes");
    assert_eq!(
        changes,
        vec![
            RouteChange {
                class: "data".into(),
                application: None
            },
            RouteChange {
                class: "voice".into(),
                application: Some("alice".into())
            },
        ]
    );
    assert_eq!(default.as_deref(), Some("reject"));
    assert_eq!(store.find("other").await.expect("find"), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_journal_is_migrated_with_its_events() {
    let dir = std::env::temp_dir().join(format!("tapir-store-v1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    {
        let conn = Connection::open(dir.join("tapird.db")).expect("db");
        conn.execute_batch(MIGRATIONS[0]).expect("version 1 schema");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.execute_batch(
            "INSERT INTO logons (id, token, application, session_id, started_ms)
                 VALUES (7, 'tok', 'alice', 's-1', 0);
             INSERT INTO events (logon, seq, at_ms, json) VALUES
                 (7, 1, 10, '{\"seq\":1}'), (7, 2, 10, '{\"seq\":2}'), (7, 3, 20, '{\"seq\":3}');",
        )
        .expect("version 1 rows");
    }
    let store = Store::open(Some(&dir), limits(3)).expect("migrate");
    let found = store.find("tok").await.expect("find").expect("known");
    assert_eq!(
        store.read_after(found.id, 1, 10).await.expect("read"),
        Read::Events(vec![(2, "{\"seq\":2}".into()), (3, "{\"seq\":3}".into())])
    );
    // New events go after the migrated ones and the bound still holds.
    store
        .append(found.id, vec![(4, "{\"seq\":4}".into())])
        .await;
    store.flush().await;
    assert_eq!(
        store.read_after(found.id, 0, 10).await.expect("read"),
        Read::Trimmed { first_kept: 2 }
    );
    drop(store);
    let conn = Connection::open(dir.join("tapird.db")).expect("db");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, MIGRATIONS.len() as i64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_takes_the_events_older_than_the_limit_and_keeps_the_rest() {
    let dir = std::env::temp_dir().join(format!("tapir-store-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hour = Limits {
        events_per_logon: 100,
        max_age: Duration::from_secs(3600),
    };
    let id = {
        let store = Store::open(Some(&dir), hour).expect("open");
        store.logon("tok", "alice", "s-1").await.expect("logon")
    };
    // Two events written two hours ago (behind the store's back), then two now.
    let conn = Connection::open(dir.join("tapird.db")).expect("db");
    let old = now_ms() - 2 * 3600 * 1000;
    for seq in 1..=2 {
        conn.execute(
            "INSERT INTO events (logon, seq, at_ms, json) VALUES (?1, ?2, ?3, '{}')",
            params![id, seq, old],
        )
        .expect("old event");
    }
    drop(conn);
    let store = Store::open(Some(&dir), hour).expect("reopen");
    for seq in 3..=4 {
        store.append(id, vec![(seq, "{}".into())]).await;
    }
    store.flush().await;
    assert_eq!(store.sweep().await.expect("sweep"), 2, "the two old ones");
    assert_eq!(
        store.read_after(id, 2, 10).await.expect("read"),
        Read::Events(vec![(3, "{}".into()), (4, "{}".into())]),
        "the two recent ones stay"
    );
    assert_eq!(store.sweep().await.expect("sweep"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_are_swept_and_a_newer_schema_is_refused() {
    let store = Store::open(
        None,
        Limits {
            events_per_logon: 100,
            max_age: Duration::ZERO,
        },
    )
    .expect("open");
    let id = store.logon("tok", "alice", "s-1").await.expect("logon");
    store.append(id, vec![(1, "{}".into())]).await;
    store.ended(id, "logoff").await.expect("ended");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(store.sweep().await.expect("sweep"), 1);
    assert_eq!(
        store.find("tok").await.expect("find"),
        None,
        "the ended log-on went too"
    );

    let dir = std::env::temp_dir().join(format!("tapir-store-schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let conn = Connection::open(dir.join("tapird.db")).expect("db");
    conn.pragma_update(None, "user_version", 99)
        .expect("version");
    drop(conn);
    let err = Store::open(Some(&dir), limits(1)).expect_err("too new");
    assert!(err.to_string().contains("schema version 99"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
