//! Replicas on one PostgreSQL share one log: their batches interleave in one gapless sequence,
//! only the replica holding the signer lock signs, and another takes over when it stops.

use std::sync::Arc;

use keyward::clock::SystemClock;
use keyward::domain::audit::{Action, Source, Status};
use keyward::ops::CallMeta;
use keyward::ops::audit_log;

use crate::support::Env;

pub async fn record(app: &keyward::ops::app::App, n: usize) {
    for _ in 0..n {
        let e =
            CallMeta::new(Source::Http).event(app.now(), Action::Whoami, Status::Success, "key");
        app.audit.record(e).await.unwrap();
    }
}

type Opened = (keyward::ops::app::App, tokio::task::JoinHandle<()>);

/// Two replicas on `env`'s database.
pub async fn two_apps(env: &Env, options: keyward::ops::app::AppOptions) -> (Opened, Opened) {
    let url = env.url();
    let open = |options| keyward::open_app(&url, Arc::new(SystemClock), options);
    let a = open(options.clone()).await.unwrap();
    let b = open(options).await.unwrap();
    (a, b)
}

/// Waits (bounded) until the log has a checkpoint covering at least `size` events.
async fn checkpoint_reaches(app: &keyward::ops::app::App, size: u64) -> bool {
    for _ in 0..200 {
        if let Some(c) = keyward::store::audit::checkpoints::latest(&app.store)
            .await
            .unwrap()
            && c.size as u64 >= size
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn two_replicas_write_one_gapless_log_and_one_signs_at_a_time() {
    let env = Env::postgres();
    let mut options = env.options(Default::default());
    options.audit_log.every = chrono::Duration::zero();
    let ((a, _wa), (b, _wb)) = two_apps(&env, options).await;
    let (sa, sb) = (audit_log::start(a.clone()), audit_log::start(b.clone()));
    let (ra, rb) = (a.clone(), b.clone());
    let (x, y) = tokio::join!(
        tokio::spawn(async move { record(&ra, 300).await }),
        tokio::spawn(async move { record(&rb, 300).await })
    );
    x.unwrap();
    y.unwrap();
    let head = keyward::store::audit::tree::head(&a.store).await.unwrap();
    assert!(head.size >= 600, "{}", head.size);
    let (n, max) = keyward::store::audit::tree::count_from(&a.store, 0)
        .await
        .unwrap();
    assert_eq!(Some(n - 1), max, "no gap, no duplicate");
    assert!(checkpoint_reaches(&a, head.size).await, "a replica signs");
    // One replica stops (signing a last checkpoint if it held the lock): the log is still
    // signed, by whichever holds the lock now.
    sa.stop().await;
    record(&b, 10).await;
    assert!(
        checkpoint_reaches(&b, head.size + 10).await,
        "still signed after one replica stopped"
    );
    // (The stopped replica has let go of the database; the running one reads the same rows.)
    let r = audit_log::verify(&b, audit_log::Mode::Full, false, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(r.verdict, audit_log::Verdict::Ok, "{r:?}");
    sb.stop().await;
}
