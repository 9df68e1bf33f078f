//! The PostgreSQL audit writer alone on its database writes each batch after the head its last
//! one left, in one round trip; these tests cut that round trip's answer, and move the head
//! under it, and check that every record is written once and the log stays whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use keyward::clock::SystemClock;
use keyward::ops::audit_log;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::audit_replicas::record;
use crate::support::Env;

fn pool(app: &keyward::ops::app::App) -> &sqlx::PgPool {
    match &app.store.db {
        keyward::store::Db::Postgres(pool) => pool,
        _ => panic!("PostgreSQL only"),
    }
}

async fn whoamis(app: &keyward::ops::app::App) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'whoami'")
        .fetch_one(pool(app))
        .await
        .unwrap()
}

async fn sql(app: &keyward::ops::app::App, q: &str) {
    sqlx::query(q).execute(pool(app)).await.unwrap();
}

/// A TCP proxy to PostgreSQL that watches the audit writer's connections. Once armed, it cuts
/// one (both ways) right after the server has committed a statement that ran as a transaction
/// of its own and returned rows: its answer (`SELECT n`, then ready and idle) is never
/// forwarded. It counts the writer's sessions, and the statements of their own that returned
/// no row (`SELECT 0`, then idle: a batch written after the head that found it moved). Any
/// other connection passes untouched.
#[derive(Default)]
struct Cutter {
    armed: AtomicBool,
    /// The writer's sessions so far, and how many there were when one was cut (0: none was).
    writers: AtomicUsize,
    cut_on: AtomicUsize,
    moved: AtomicUsize,
}

async fn start_cutter(upstream: String) -> (Arc<Cutter>, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cutter = Arc::new(Cutter::default());
    let c = cutter.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            tokio::spawn(relay(client, server, c.clone()));
        }
    });
    (cutter, port)
}

async fn relay(client: TcpStream, server: TcpStream, cutter: Arc<Cutter>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let writer = Arc::new(AtomicBool::new(false));
    let is_writer = writer.clone();
    let counted = cutter.clone();
    // Client to server: as is, noting whether the startup message names the writer.
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut first = true;
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if first {
                first = false;
                let seen = buf[..n]
                    .windows(b"keyward-audit-writer".len())
                    .any(|w| w == b"keyward-audit-writer");
                is_writer.store(seen, Ordering::SeqCst);
                if seen {
                    counted.writers.fetch_add(1, Ordering::SeqCst);
                }
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    // Server to client: message by message (type, length), so an answer can be held back.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut rows_returned, mut none_returned) = (false, false);
    loop {
        let n = match from_server.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut whole = 0;
        let mut cut = false;
        while pending.len() - whole >= 5 {
            let len =
                u32::from_be_bytes(pending[whole + 1..whole + 5].try_into().unwrap()) as usize;
            if pending.len() - whole < 1 + len {
                break;
            }
            let (kind, body) = (pending[whole], &pending[whole + 5..whole + 1 + len]);
            let watched = writer.load(Ordering::SeqCst);
            if kind == b'C' {
                none_returned = body == b"SELECT 0\0";
                rows_returned = body.starts_with(b"SELECT ") && !none_returned;
            } else if kind == b'Z' {
                let idle = body == b"I";
                if watched && idle && rows_returned && cutter.armed.load(Ordering::SeqCst) {
                    cut = true;
                }
                if watched && idle && none_returned {
                    cutter.moved.fetch_add(1, Ordering::SeqCst);
                }
                (rows_returned, none_returned) = (false, false);
            }
            whole += 1 + len;
        }
        if cut {
            cutter.armed.store(false, Ordering::SeqCst);
            let sessions = cutter.writers.load(Ordering::SeqCst);
            cutter.cut_on.store(sessions, Ordering::SeqCst);
            break;
        }
        if to_client.write_all(&pending[..whole]).await.is_err() {
            break;
        }
        pending.drain(..whole);
    }
    upstream.abort();
}

/// Where `env`'s database server listens.
fn upstream(env: &Env) -> String {
    let url = url::Url::parse(&env.url()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
}

/// The URL of `env`'s database through a proxy on `port`, without TLS (so the proxy can read
/// the protocol).
fn via(env: &Env, port: u16) -> String {
    let mut url = url::Url::parse(&env.url()).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    url.query_pairs_mut().append_pair("sslmode", "disable");
    url.to_string()
}

/// A batch written after the head, committed, whose answer never reaches the writer: the
/// writer finds it in the log (its leaf at its place) and answers with its ids instead of
/// writing it again. Every record is there once, and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn a_batch_committed_whose_answer_was_lost_is_found_and_not_written_again() {
    let env = Env::postgres();
    let (cutter, port) = start_cutter(upstream(&env)).await;
    let (app, _w) = keyward::open_app(
        &via(&env, port),
        Arc::new(SystemClock),
        env.options(Default::default()),
    )
    .await
    .unwrap();
    // One at a time: the writer's second batch finds the head where its first left it, and
    // from then on writes after it, in one round trip.
    record(&app, 4).await;
    cutter.armed.store(true, Ordering::SeqCst);
    record(&app, 1).await;
    // Cut on the writer's first session, which had been set up before the proxy was armed:
    // what was cut is a batch's answer, not a new session's set-up.
    assert_eq!(
        cutter.cut_on.load(Ordering::SeqCst),
        1,
        "a committed batch's answer was cut"
    );
    record(&app, 3).await;
    assert_eq!(whoamis(&app).await, 8, "each record written once");
    whole(&app).await;
}

/// A head moved under a writer that remembers it (another writer's batch, or a rekey's epoch):
/// its next batch, written after the head it remembers, writes nothing there (seen through the
/// proxy: `SELECT 0`), goes through the sequencer lock, and lands after the head as it is. Each
/// record once, no gap, and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn a_head_moved_under_a_writer_is_written_after_never_over() {
    let env = Env::postgres();
    let (cutter, port) = start_cutter(upstream(&env)).await;
    let options = env.options(Default::default());
    let open = |url: String, options| async move {
        keyward::open_app(&url, Arc::new(SystemClock), options)
            .await
            .unwrap()
    };
    let (a, _wa) = open(via(&env, port), options.clone()).await;
    let (b, _wb) = open(env.url(), options.clone()).await;
    // Counted from here: setting up a session may answer `SELECT 0` too.
    let since = |from: usize| cutter.moved.load(Ordering::SeqCst) - from;
    let opened = cutter.moved.load(Ordering::SeqCst);
    record(&a, 4).await;
    assert_eq!(
        since(opened),
        0,
        "alone, A's batches land where it left the head"
    );
    // Another writer's batch moves the head under A's remembered one.
    record(&b, 3).await;
    record(&a, 2).await;
    assert_eq!(
        since(opened),
        1,
        "A's batch after its old head wrote nothing"
    );
    // A rekey's epoch moves the head without changing its size or its edge (a writer fresh to
    // it, alone from its second batch).
    let (c, _wc) = open(via(&env, port), options).await;
    let opened = cutter.moved.load(Ordering::SeqCst);
    record(&c, 3).await;
    sql(&c, "UPDATE audit_head SET epoch = epoch + 1 WHERE id = 1").await;
    record(&c, 1).await;
    assert_eq!(
        since(opened),
        1,
        "a moved epoch stops a batch after the old head"
    );
    record(&b, 1).await;
    record(&a, 1).await;
    record(&c, 1).await;
    assert_eq!(whoamis(&a).await, 16, "each record written once");
    whole(&a).await;
}

/// The log has no gap and no place twice, and verifies but for its checkpoint (these apps
/// sign none): every body rehashed into the one tree.
async fn whole(app: &keyward::ops::app::App) {
    let (n, max) = keyward::store::audit::tree::count_from(&app.store, 0)
        .await
        .unwrap();
    assert_eq!(Some(n - 1), max, "no gap, no duplicate");
    let r = audit_log::verify(app, audit_log::Mode::Full, false, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(r.tree.size, n, "{r:?}");
    assert_eq!(r.checked.bodies_rehashed, n, "{r:?}");
    let problem = r.first_problem.as_ref().map(|p| p.kind.as_str());
    assert_eq!(problem, Some("no_recent_checkpoint"), "{r:?}");
}
