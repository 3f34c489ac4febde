//! Batching (README "Batching"): requests that queue while the statement slots are busy share
//! one statement, and each still gets its own result; a row that fails the statement fails
//! only its own request.

use futures::future::join_all;
use pg_proxy::batch::{Batcher, InsertMessages};
use pg_proxy::domain::{Contact, Direction, MessageId};
use pg_proxy::error::ApiError;
use pg_proxy::pool::DbPool;
use pg_proxy::store::NewMessage;

use crate::helpers::{message, serve_config, unix_now, Opts, TestApp};

fn contact(i: usize) -> String {
    format!("55119000000{i:02}@s.whatsapp.net")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_and_reads_share_statements_and_each_gets_its_own_result() {
    // One statement of each kind at a time: everything that arrives meanwhile is batched.
    let app = TestApp::spawn_with(Opts::default().set("DB_BATCH_CONCURRENCY", "1")).await;
    let t0 = unix_now() - 1000;
    // Every id twice (i and i + 48): exactly one of the pair is new, both see the same row.
    let inserts = (0..96).map(|n| {
        let i = n % 48;
        let m = message(
            &format!("B{i}"),
            &contact(i % 4),
            &format!("m{i}"),
            t0 + i as i64,
        );
        app.call("POST", "/v1/messages", Some(m))
    });
    let results = join_all(inserts).await;
    for i in 0..48 {
        let (a, b) = (&results[i], &results[i + 48]);
        assert!(
            [a.0, b.0].iter().all(|s| *s == 200 || *s == 201),
            "{a:?} {b:?}"
        );
        assert_eq!(a.1["id"], b.1["id"], "B{i}");
        let news = [a, b].iter().filter(|r| r.1["new"] == true).count();
        assert_eq!(news, 1, "B{i}: {a:?} {b:?}");
    }
    let ids: std::collections::HashSet<String> =
        results.iter().map(|r| r.1["id"].to_string()).collect();
    assert_eq!(ids.len(), 48, "one row per provider id");

    let paths: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "/v1/conversations/history?contact={}&limit={}",
                contact(i % 4),
                1 + i % 12
            )
        })
        .collect();
    let reads = paths.iter().map(|path| app.call("GET", path, None));
    let pages = join_all(reads).await;
    for (i, (status, page)) in pages.iter().enumerate() {
        assert_eq!(*status, 200);
        let c = i % 4;
        let limit = 1 + i % 12;
        assert_eq!(page["contact"], contact(c));
        let bodies: Vec<&str> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        // The contact's 12 messages are m{c}, m{c+4}, …; the page is the last `limit` of
        // them, oldest first.
        let all: Vec<String> = (0..12).map(|k| format!("m{}", c + 4 * k)).collect();
        let want: Vec<&str> = all[12 - limit..].iter().map(String::as_str).collect();
        assert_eq!(bodies, want, "read {i}");
    }

    let stats = app.health().await["batching"].clone();
    let (req, stm) = (
        stats["insert_message"]["requests"].as_u64().unwrap(),
        stats["insert_message"]["statements"].as_u64().unwrap(),
    );
    assert_eq!(req, 96);
    assert!(stm < req, "inserts were not batched: {stats}");
    let (req, stm) = (
        stats["history"]["requests"].as_u64().unwrap(),
        stats["history"]["statements"].as_u64().unwrap(),
    );
    assert_eq!(req, 40);
    assert!(stm < req, "reads were not batched: {stats}");
}

fn new_message(id: &str, body: &str) -> NewMessage {
    NewMessage {
        provider_message_id: MessageId::parse(id).unwrap(),
        instance: "kumon-main".into(),
        contact: Contact::parse(&contact(1)).unwrap(),
        direction: Direction::Inbound,
        body: body.into(),
        push_name: None,
        sent_at: unix_now(),
    }
}

// Current-thread runtime: the three submissions are queued before the dispatcher runs, so
// they share one statement.
#[tokio::test]
async fn a_row_that_fails_the_statement_fails_only_its_own_request() {
    let app = TestApp::spawn().await;
    let cfg = serve_config(&app.db, &Opts::default());
    let pool = DbPool::new(&cfg.database_url, cfg.pool.clone()).unwrap();
    let batcher = Batcher::<InsertMessages>::start(pool, 1);
    // Postgres text cannot hold NUL (the HTTP layer refuses control characters before this).
    let results = join_all([
        batcher.submit(new_message("OK1", "fine")),
        batcher.submit(new_message("BAD", "nul \0 byte")),
        batcher.submit(new_message("OK2", "fine too")),
    ])
    .await;
    assert!(matches!(&results[0], Ok(i) if i.new), "{:?}", results[0]);
    assert!(
        matches!(&results[1], Err(ApiError::Unexpected(_))),
        "{:?}",
        results[1]
    );
    assert!(matches!(&results[2], Ok(i) if i.new), "{:?}", results[2]);
    let stats = batcher.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.statements, 4, "one batch, then each alone");
}

// A request whose caller goes away while its statement waits (the client disconnected) must
// not hold the batcher's slot for good: the next request still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_caller_gave_up_does_not_keep_the_slot() {
    let app = TestApp::spawn().await;
    let cfg = serve_config(&app.db, &Opts::default());
    let pool = DbPool::new(&cfg.database_url, cfg.pool.clone()).unwrap();
    let batcher = Batcher::<InsertMessages>::start(pool, 1);
    let locker = app.db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Its statement takes the only slot, then waits on the lock; the caller gives up.
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        batcher.submit(new_message("GONE", "cancelled")),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the insert should have waited on the lock"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        batcher.submit(new_message("NEXT", "after the cancel")),
    )
    .await
    .expect("the slot was not given back");
    assert!(matches!(&next, Ok(i) if i.new), "{next:?}");
    let stats = batcher.stats();
    assert_eq!(
        (stats.requests, stats.statements),
        (2, 2),
        "one statement each"
    );
}
