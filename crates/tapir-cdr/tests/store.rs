//! Both stores answer every query the same way, page without gaps or repeats, apply retention, and the
//! SQLite file keeps its records across reopening.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapir_cdr::{
    CdrQuery, CdrStore, MemoryStore, Recorder, RecorderOptions, Retention, SqliteStore, StoredCdr,
    to_wire, write_csv, write_jsonl,
};
use tapir_core::cdr::{CallDetailRecord, CdrParty, Disposition};
use tapir_core::info::{CallOrigin, CallReason};
use tapir_core::state::DisconnectReason;
use tapir_core::{AddressId, CallId, LineId};

fn base() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

/// Record `i` of a varied, deterministic set.
fn record(i: u64) -> CallDetailRecord {
    let started = base() + Duration::from_secs(i * 60);
    let answered = (i % 3 != 0).then(|| started + Duration::from_secs(4));
    let number = |n: u64| CdrParty {
        number: Some(format!("+1555{:04}", n % 7)),
        name: (n % 2 == 0).then(|| format!("Party {n}")),
    };
    CallDetailRecord {
        call_id: CallId(1000 + i / 2),
        related_call_ids: if i % 5 == 0 {
            vec![CallId(2000 + i)]
        } else {
            vec![]
        },
        line: LineId((i % 4) as u32),
        line_name: format!("Extension 10{}", i % 4),
        address: AddressId(0),
        origin: if i % 2 == 0 {
            CallOrigin::Outbound
        } else {
            CallOrigin::External
        },
        reason: if i % 4 == 3 {
            CallReason::Transfer
        } else {
            CallReason::Direct
        },
        caller: number(i),
        called: number(i + 1),
        connected: if answered.is_some() {
            number(i + 1)
        } else {
            CdrParty::default()
        },
        redirecting: CdrParty::default(),
        started,
        answered,
        ended: started + Duration::from_secs(30),
        ringing: Duration::from_secs(if answered.is_some() { 4 } else { 30 }),
        talking: Duration::from_secs(if answered.is_some() { 26 } else { 0 }),
        on_hold: Duration::ZERO,
        disposition: if answered.is_some() {
            Disposition::Answered
        } else if i % 2 == 0 {
            Disposition::Busy
        } else {
            Disposition::NoAnswer
        },
        disconnect: answered.is_none().then_some(DisconnectReason::Busy),
        owners: vec![format!("app-{}", i % 2), "crm, \"north\"".into()],
    }
}

async fn filled(store: &dyn CdrStore, n: u64) {
    // In three batches, as a recorder would write them.
    let all: Vec<CallDetailRecord> = (0..n).map(record).collect();
    for chunk in all.chunks(17) {
        store.insert(chunk.to_vec()).await.expect("inserts");
    }
}

fn queries() -> Vec<CdrQuery> {
    let q = CdrQuery::default;
    vec![
        q(),
        CdrQuery { limit: 7, ..q() },
        CdrQuery {
            since: Some(base() + Duration::from_secs(600)),
            until: Some(base() + Duration::from_secs(1800)),
            ..q()
        },
        CdrQuery {
            number: Some("5550003".into()),
            ..q()
        },
        CdrQuery {
            call_id: Some(CallId(1005)),
            ..q()
        },
        CdrQuery {
            call_id: Some(CallId(2010)),
            ..q()
        },
        CdrQuery {
            disposition: Some(Disposition::Busy),
            limit: 3,
            ..q()
        },
        CdrQuery {
            lines: Some(vec![LineId(1), LineId(3)]),
            limit: 4,
            ..q()
        },
        CdrQuery {
            disposition: Some(Disposition::NoAnswer),
            number: Some("+1555".into()),
            since: Some(base()),
            ..q()
        },
    ]
}

/// Every page of `query`, following `next`.
async fn all_pages(store: &dyn CdrStore, query: &CdrQuery) -> Vec<StoredCdr> {
    let mut out = Vec::new();
    let mut q = query.clone();
    loop {
        let page = store.query(&q).await.expect("queries");
        assert!(page.records.len() <= q.limit as usize);
        out.extend(page.records);
        match page.next {
            Some(before) => q.before = Some(before),
            None => return out,
        }
    }
}

#[tokio::test]
async fn both_stores_answer_queries_alike_and_page_without_gaps() {
    let memory = MemoryStore::new();
    let sqlite = SqliteStore::open(None).expect("opens");
    filled(&memory, 60).await;
    filled(&sqlite, 60).await;
    let truth = memory.all();
    assert_eq!(truth.len(), 60);
    for q in queries() {
        let expected: Vec<StoredCdr> = truth
            .iter()
            .rev()
            .filter(|r| q.matches(r))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "the fixture has matches for {q:?}");
        let from_memory = all_pages(&memory, &q).await;
        let from_sqlite = all_pages(&sqlite, &q).await;
        assert_eq!(from_memory, expected, "memory store, {q:?}");
        assert_eq!(from_sqlite, expected, "sqlite store, {q:?}");
        let first = sqlite.query(&q).await.expect("queries");
        assert_eq!(first.records.len(), expected.len().min(q.limit as usize));
    }
    // A call ID finds its own records and those linked to it.
    let linked = all_pages(
        &sqlite,
        &CdrQuery {
            call_id: Some(CallId(2010)),
            ..CdrQuery::default()
        },
    )
    .await;
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].record.call_id, CallId(1005));
}

#[tokio::test]
async fn retention_deletes_by_age_and_by_count_in_both_stores() {
    for store in [
        Arc::new(MemoryStore::new()) as Arc<dyn CdrStore>,
        Arc::new(SqliteStore::open(None).expect("opens")),
    ] {
        filled(&*store, 60).await;
        // Calls start a minute apart from base(): at base()+60 min with a 30-minute age, 30 remain.
        let now = base() + Duration::from_secs(3600);
        let gone = store
            .purge(
                Retention {
                    max_age: Some(Duration::from_secs(1800)),
                    max_records: None,
                },
                now,
            )
            .await
            .expect("purges");
        assert_eq!((gone, store.count().await.expect("counts")), (30, 30));
        let gone = store
            .purge(
                Retention {
                    max_age: None,
                    max_records: Some(10),
                },
                now,
            )
            .await
            .expect("purges");
        assert_eq!((gone, store.count().await.expect("counts")), (20, 10));
        let kept = all_pages(&*store, &CdrQuery::default()).await;
        let ids: Vec<u64> = kept.iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            (51..=60).rev().collect::<Vec<_>>(),
            "the newest ten are kept"
        );
        // Linked call IDs of deleted records are gone with them.
        let orphans = store
            .query(&CdrQuery {
                call_id: Some(CallId(2000)),
                ..CdrQuery::default()
            })
            .await
            .expect("queries");
        assert!(orphans.records.is_empty());
    }
}

#[tokio::test]
async fn the_file_keeps_records_across_reopening_and_ids_are_not_reused() {
    let dir = std::env::temp_dir().join(format!("tapir-cdr-reopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("cdr.db");
    {
        let store = SqliteStore::open(Some(&path)).expect("opens");
        filled(&store, 20).await;
        store
            .purge(
                Retention {
                    max_age: None,
                    max_records: Some(5),
                },
                base(),
            )
            .await
            .expect("purges");
    }
    let store = SqliteStore::open(Some(&path)).expect("reopens");
    assert!(store.integrity_ok().await.expect("checks"));
    let kept = all_pages(&store, &CdrQuery::default()).await;
    assert_eq!(kept.len(), 5);
    assert_eq!(
        kept[0].record,
        record(19),
        "every field survives the round trip"
    );
    store.insert(vec![record(20)]).await.expect("inserts");
    let newest = store
        .query(&CdrQuery {
            limit: 1,
            ..CdrQuery::default()
        })
        .await
        .expect("queries");
    assert_eq!(newest.records[0].id, 21, "ids continue after deleted ones");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn exports_have_one_line_per_record_in_the_api_shape() {
    let store = MemoryStore::new();
    filled(&store, 3).await;
    let records = store.all();
    let mut csv = Vec::new();
    write_csv(&records, &mut csv).expect("writes");
    let csv = String::from_utf8(csv).expect("utf-8");
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("id,call_id,related_call_ids,line,"));
    assert!(
        lines[1].starts_with(
            "1,call-1000,call-2000,0,Extension 100,0,outbound,direct,+15550000,Party 0,"
        )
    );
    assert!(
        lines[1].ends_with(",busy,busy,\"app-0;crm, \"\"north\"\"\""),
        "{}",
        lines[1]
    );
    let mut jsonl = Vec::new();
    write_jsonl(&records, &mut jsonl).expect("writes");
    let jsonl = String::from_utf8(jsonl).expect("utf-8");
    let parsed: Vec<tapir_api::cdr::Cdr> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a record"))
        .collect();
    assert_eq!(parsed, records.iter().map(to_wire).collect::<Vec<_>>());
    // 1,790,000,064 s after the epoch (Python: datetime.fromtimestamp(1790000064, timezone.utc)).
    assert_eq!(
        parsed[1].answered.as_deref(),
        Some("2026-09-21T14:14:24.000Z")
    );
    assert_eq!(parsed[1].talking_ms, 26_000);
}

#[tokio::test]
async fn the_recorder_writes_in_batches_and_flush_waits_for_them() {
    let store = Arc::new(SqliteStore::open(None).expect("opens"));
    let recorder = Recorder::start(
        store.clone(),
        RecorderOptions {
            batch: 8,
            ..RecorderOptions::default()
        },
    );
    use tapir_core::cdr::CdrSink;
    for i in 0..100 {
        recorder.record(record(i));
    }
    recorder.flush().await.expect("flushes");
    assert_eq!(store.count().await.expect("counts"), 100);
    let stats = recorder.stats();
    assert_eq!(
        (stats.written, stats.lost, stats.failed_batches),
        (100, 0, 0)
    );
    // In order: the newest record is the last one recorded.
    let newest = store
        .query(&CdrQuery {
            limit: 1,
            ..CdrQuery::default()
        })
        .await
        .expect("queries");
    assert_eq!(newest.records[0].record, record(99));
}

#[tokio::test]
async fn a_full_queue_loses_records_and_says_so_without_blocking() {
    let store = Arc::new(MemoryStore::new());
    let recorder = Recorder::start(
        store.clone(),
        RecorderOptions {
            queue: 4,
            ..RecorderOptions::default()
        },
    );
    use tapir_core::cdr::CdrSink;
    // The writer task has not run yet (current-thread runtime): the fifth record finds the queue full.
    for i in 0..6 {
        recorder.record(record(i));
    }
    recorder.flush().await.expect("flushes");
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.lost), (4, 2));
    assert_eq!(store.count().await.expect("counts"), 4);
}

#[tokio::test(start_paused = true)]
async fn the_recorder_sweeps_by_its_retention_in_the_background() {
    let store = Arc::new(MemoryStore::new());
    let recorder = Recorder::start(
        store.clone(),
        RecorderOptions {
            retention: Retention {
                max_age: None,
                max_records: Some(3),
            },
            sweep_every: Duration::from_secs(60),
            ..RecorderOptions::default()
        },
    );
    use tapir_core::cdr::CdrSink;
    for i in 0..10 {
        recorder.record(record(i));
    }
    recorder.flush().await.expect("flushes");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(store.count().await.expect("counts"), 3);
    assert_eq!(recorder.stats().purged, 7);
}
