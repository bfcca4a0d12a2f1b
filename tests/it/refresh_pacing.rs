//! A hostile or broken provider cannot drive a loop (issue 14, point 3), in process: the
//! real engine, scheduler and single flight against the scripted fake provider on
//! 127.0.0.1, on tokio's paused clock. Concrete cases first (429 with `Retry-After: 0`,
//! a wait past the deadline, the forced-refresh limit for every kind of answer, tokens that
//! expire at once, a caller going away, the writes a retry costs), then a property test
//! over arbitrary answer sequences and callers that counts what the provider saw in every
//! minute (`policy::MAX_CALLS_PER_MINUTE`, derived in `src/refresh/policy.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::refresh_engine::{CONN, get, put, record, setup};
use crate::support::fake_provider::{Canned, FakeProvider};
use crate::support::*;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokenvault::contract::{Request, Response};
use tokenvault::engine::Engine;
use tokenvault::refresh::caller;
use tokenvault::refresh::policy::{MAX_CALLS_PER_MINUTE, ON_DEMAND_CALLS, ON_DEMAND_DEADLINE};
use tokenvault::vault::records::Status;
use tokio::time::{Instant, sleep, timeout};

const MINUTE: Duration = Duration::from_secs(60);
/// Hang guard for one request on the paused clock (a hang would auto-advance into it).
const GUARD: Duration = Duration::from_secs(300);

async fn refresh(engine: &Engine) -> tokenvault::Result<Response> {
    engine
        .handle(
            &admin(),
            Request::Refresh {
                connection: CONN.into(),
            },
        )
        .await
}

async fn force_get(engine: &Engine) -> tokenvault::Result<Response> {
    engine
        .handle(
            &admin(),
            Request::Get {
                connection: CONN.into(),
                min_ttl: None,
                force_refresh: true,
            },
        )
        .await
}

/// Runs the scheduler on `engine` until the returned sender fires or is dropped.
fn scheduler(engine: &Arc<Engine>) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let e = engine.clone();
    tokio::spawn(async move {
        let _ = tokenvault::refresh::run_scheduler(e.refresher().clone(), async {
            let _ = rx.await;
        })
        .await;
    });
    tx
}

fn unavailable(r: tokenvault::Result<Response>) -> String {
    let e = r.expect_err("the refresh should have failed");
    assert_eq!(
        (e.exit_code(), e.code()),
        (7, "provider_unavailable"),
        "{e}"
    );
    e.to_string()
}

#[tokio::test(start_paused = true)]
async fn retry_after_zero_forever_costs_three_calls_then_exit_7_and_the_scheduler_paces_the_rest() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 3600).await;
    fp.repeat([Canned::RateLimited(Some("0".into()))]);
    let _stop = scheduler(&engine);
    let t0 = engine.now();
    let start = Instant::now();
    let msg = unavailable(timeout(GUARD, refresh(&engine)).await.unwrap());
    assert!(
        start.elapsed() <= ON_DEMAND_DEADLINE,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fp.requests(), ON_DEMAND_CALLS as u64, "{msg}");
    assert!(msg.contains("gave up after 3 provider calls"), "{msg}");
    assert!(msg.contains("the scheduler will retry at"), "{msg}");
    assert!(!msg.contains("rt-"), "{msg}");
    let rec = record(&engine, CONN);
    assert_eq!(rec.status, Status::Retrying);
    assert_eq!(rec.attempts, 0, "a 429 is not counted as an attempt");
    // the scheduler takes over only after the on-demand deadline
    assert!(rec.due_at.unwrap() >= t0 + ON_DEMAND_DEADLINE.as_secs() as i64);
    sleep(Duration::from_secs(20)).await;
    assert_eq!(fp.requests(), 3, "nothing more while the caller is gone");
    // five minutes of the scheduler alone: it keeps trying, within the budget
    sleep(Duration::from_secs(300)).await;
    assert!(fp.requests() > 3, "the scheduler retries");
    assert!(
        fp.most_calls_within(MINUTE) <= MAX_CALLS_PER_MINUTE as usize,
        "{} calls in one minute",
        fp.most_calls_within(MINUTE)
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_ends_the_attempt_at_once() {
    for value in ["120", "Sat, 01 Jan 2039 00:00:00 GMT"] {
        let fp = FakeProvider::start().await;
        let (_tv, engine) = setup(&fp, "spotify").await;
        put(&engine, CONN, fp.new_family(), 3600).await;
        fp.repeat([Canned::RateLimited(Some(value.into()))]);
        let now = engine.now();
        let start = Instant::now();
        let msg = unavailable(timeout(GUARD, refresh(&engine)).await.unwrap());
        assert!(start.elapsed() < Duration::from_secs(1), "no inline wait");
        assert_eq!(fp.requests(), 1);
        let rec = record(&engine, CONN);
        let due = rec.due_at.unwrap();
        if value == "120" {
            assert!(msg.contains("asked us to wait 120 s"), "{msg}");
            assert!((now + 120..=now + 121).contains(&due), "{due} vs {now}");
        } else {
            // a date years ahead counts as the longest wait honoured, a day
            assert!(msg.contains("asked us to wait 86400 s"), "{msg}");
            assert!(due >= now + 86_400, "{due} vs {now}");
        }
        assert!(msg.contains("try again after"), "no scheduler here: {msg}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_within_the_deadline_is_waited_then_the_deadline_ends_it() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 3600).await;
    fp.repeat([Canned::RateLimited(Some("20".into()))]);
    let start = Instant::now();
    let msg = unavailable(timeout(GUARD, refresh(&engine)).await.unwrap());
    // a call at 0 s and one at 20 s; the next would be at 40 s, past the deadline
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took <= ON_DEMAND_DEADLINE,
        "{took:?}"
    );
    assert_eq!(fp.requests(), 2);
    assert!(msg.contains("asked us to wait 20 s"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_answer_keeps_forced_refreshes_to_one_per_ten_seconds() {
    let answers = [
        Canned::RateLimited(Some("0".into())),
        Canned::RateLimited(None),
        Canned::Status(503),
        Canned::Hangup,
        Canned::Garbage,
        Canned::Normal,
        Canned::Delay(Duration::from_secs(20)),
        Canned::InvalidGrant,
    ];
    for answer in answers {
        let fp = FakeProvider::start().await;
        let (_tv, engine) = setup(&fp, "spotify").await;
        put(&engine, CONN, fp.new_family(), 3600).await;
        fp.repeat([answer.clone()]);
        let start = Instant::now();
        let mut served = 0;
        while start.elapsed() < MINUTE {
            let t = Instant::now();
            if timeout(GUARD, force_get(&engine)).await.unwrap().is_ok() {
                served += 1;
            }
            assert!(
                t.elapsed() <= ON_DEMAND_DEADLINE,
                "{answer:?}: {:?}",
                t.elapsed()
            );
            if !matches!(answer, Canned::Delay(_)) {
                // a still-valid token never waits for the provider's pacing
                assert!(
                    t.elapsed() < Duration::from_secs(1),
                    "{answer:?}: {:?}",
                    t.elapsed()
                );
            }
            sleep(Duration::from_millis(500)).await;
        }
        let calls = fp.requests();
        if matches!(answer, Canned::InvalidGrant) {
            // needs_reauth: nothing more is asked of the provider
            assert_eq!(calls, 1, "{answer:?}");
            continue;
        }
        // at 0, 10, 20, 30, 40, 50 s at most; the still-valid token is handed out meanwhile
        assert!((1..=6).contains(&calls), "{answer:?}: {calls} calls");
        if !matches!(answer, Canned::Delay(_)) {
            assert!(served > 100, "{answer:?}: only {served} answers");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn tokens_that_expire_at_once_do_not_buy_a_loop() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    fp.with(|s| s.expires_in = 0);
    put(&engine, CONN, fp.new_family(), 0).await;
    let _stop = scheduler(&engine);
    let start = Instant::now();
    let (mut ok, mut refused) = (0, 0);
    while start.elapsed() < Duration::from_secs(180) {
        let t = Instant::now();
        match timeout(GUARD, get(&engine, CONN)).await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.exit_code(), 7, "{e}");
                refused += 1;
            }
        }
        assert!(t.elapsed() <= ON_DEMAND_DEADLINE, "{:?}", t.elapsed());
        sleep(Duration::from_secs(1)).await;
    }
    assert!(ok > 0, "some refreshes succeed ({refused} refused)");
    let most = fp.most_calls_within(MINUTE);
    assert!(
        most <= MAX_CALLS_PER_MINUTE as usize,
        "{most} calls in a minute"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_that_change_only_bookkeeping_are_not_written_one_by_one() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.repeat([Canned::Status(503)]);
    let (_, before) = engine.refresher().state().commits.counts();
    let e = timeout(GUARD, get(&engine, CONN))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.exit_code(), 7, "{e}");
    assert_eq!(fp.requests(), 3);
    let (_, after) = engine.refresher().state().commits.counts();
    // the first failure changed the status (written and announced at once); the second
    // changed only bookkeeping; the third ended the refresh and wrote it all
    assert_eq!(after - before, 2, "three failed calls, two writes");
    let rec = record(&engine, CONN);
    assert_eq!((rec.status, rec.attempts), (Status::TokenExpired, 3));
    assert!(rec.due_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_goes_away_stops_its_refresh_before_the_next_call() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 3600).await;
    // every answer takes 2 s, then says 503: without the caller, two more calls would follow
    fp.repeat([Canned::Delay(Duration::from_secs(2)), Canned::Status(503)]);
    let t0 = engine.now();
    let (gone, flag) = caller::flag();
    let e = engine.clone();
    let req = tokio::spawn(caller::scope(flag, async move { refresh(&e).await }));
    while fp.requests() == 0 {
        sleep(Duration::from_millis(10)).await;
    }
    gone.send(true).unwrap();
    let r = timeout(GUARD, req).await.unwrap().unwrap();
    let msg = unavailable(r);
    assert!(msg.contains("caller went away"), "{msg}");
    sleep(Duration::from_secs(20)).await;
    assert_eq!(fp.requests(), 1, "only the call in flight");
    // its answer was kept, and the scheduler takes over after the deadline
    let rec = record(&engine, CONN);
    assert_eq!((rec.status, rec.attempts), (Status::Retrying, 1));
    assert!(rec.due_at.unwrap() >= t0 + ON_DEMAND_DEADLINE.as_secs() as i64);
}

#[tokio::test(start_paused = true)]
async fn a_shared_refresh_goes_on_while_another_caller_waits() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    // expired, so a plain `get` needs the refresh too and joins it
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.repeat([Canned::Delay(Duration::from_secs(2)), Canned::Status(503)]);
    let (gone_a, flag_a) = caller::flag();
    let e = engine.clone();
    let a = tokio::spawn(caller::scope(flag_a, async move { refresh(&e).await }));
    while fp.requests() == 0 {
        sleep(Duration::from_millis(10)).await;
    }
    let e = engine.clone();
    let b = tokio::spawn(async move { get(&e, CONN).await });
    sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.refresher().state().flights.waiters(CONN), 1);
    // the runner's caller leaves; the refresh goes on for the one still waiting
    gone_a.send(true).unwrap();
    let e = timeout(GUARD, b).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.exit_code(), 7, "{e}");
    assert!(
        e.to_string().contains("gave up after 3 provider calls"),
        "{e}"
    );
    assert_eq!(fp.requests(), 3);
    let _ = timeout(GUARD, a).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_stops_waiting_while_the_refresh_goes_on() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.repeat([Canned::Delay(Duration::from_secs(2)), Canned::Status(503)]);
    let e = engine.clone();
    let runner = tokio::spawn(async move { refresh(&e).await });
    while fp.requests() == 0 {
        sleep(Duration::from_millis(10)).await;
    }
    let (gone_w, flag_w) = caller::flag();
    let e = engine.clone();
    let waiter = tokio::spawn(caller::scope(flag_w, async move { get(&e, CONN).await }));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.refresher().state().flights.waiters(CONN), 1);
    gone_w.send(true).unwrap();
    let left = Instant::now();
    let e = timeout(GUARD, waiter).await.unwrap().unwrap().unwrap_err();
    assert!(e.to_string().contains("caller went away"), "{e}");
    assert!(left.elapsed() < Duration::from_secs(1));
    unavailable(timeout(GUARD, runner).await.unwrap().unwrap());
    assert_eq!(
        fp.requests(),
        3,
        "the runner's caller stayed: its refresh ran out"
    );
}

/// One thing a caller does in the property test.
#[derive(Debug, Clone)]
enum Knock {
    Get,
    ForceGet,
    Refresh,
    /// Five `get`s at once (single flight).
    Burst,
    /// A new token, as a tenant's script or an operator would `put`.
    Put(i64),
    /// Nothing for a while (the scheduler alone).
    Idle(u64),
}

fn knock() -> impl Strategy<Value = Knock> {
    prop_oneof![
        4 => Just(Knock::Get),
        3 => Just(Knock::ForceGet),
        3 => Just(Knock::Refresh),
        1 => Just(Knock::Burst),
        1 => prop_oneof![Just(0i64), Just(1), 0i64..4000].prop_map(Knock::Put),
        1 => (1u64..90).prop_map(Knock::Idle),
    ]
}

fn retry_after() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("0".to_owned())),
        Just(Some("-5".to_owned())),
        Just(Some("99999999999999999999".to_owned())),
        Just(Some("Thu, 01 Jan 1970 00:00:00 GMT".to_owned())),
        Just(Some("Sat, 01 Jan 2039 00:00:00 GMT".to_owned())),
        Just(Some("soon".to_owned())),
        Just(Some("1.5".to_owned())),
        (0u64..90).prop_map(|n| Some(n.to_string())),
    ]
}

/// Any answer a provider may give: success, 429 with any `Retry-After`, 5xx, a broken
/// connection, garbage, `invalid_grant`, and slow answers (up to 20 s: beyond the 15 s
/// HTTP timeout is a timeout).
fn answer() -> impl Strategy<Value = Canned> {
    prop_oneof![
        3 => Just(Canned::Normal),
        2 => Just(Canned::Status(503)),
        1 => Just(Canned::Status(500)),
        3 => retry_after().prop_map(Canned::RateLimited),
        1 => Just(Canned::Hangup),
        1 => Just(Canned::Garbage),
        1 => Just(Canned::InvalidGrant),
        2 => (0u64..20_000).prop_map(|ms| Canned::Delay(Duration::from_millis(ms))),
    ]
}

async fn one_case(
    script: Vec<Canned>,
    repeat: Vec<Canned>,
    lifetime: u64,
    stored: i64,
    knocks: Vec<(u64, Knock)>,
) -> std::result::Result<(), TestCaseError> {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    fp.with(|s| s.expires_in = lifetime);
    put(&engine, CONN, fp.new_family(), stored).await;
    fp.script(script);
    fp.repeat(repeat);
    let stop = scheduler(&engine);
    for (gap_ms, k) in knocks {
        sleep(Duration::from_millis(gap_ms)).await;
        let t = Instant::now();
        match k {
            Knock::Get => drop(timeout(GUARD, get(&engine, CONN)).await),
            Knock::ForceGet => drop(timeout(GUARD, force_get(&engine)).await),
            Knock::Refresh => drop(timeout(GUARD, refresh(&engine)).await),
            Knock::Burst => {
                let gets = (0..5).map(|_| get(&engine, CONN));
                drop(timeout(GUARD, futures::future::join_all(gets)).await);
            }
            Knock::Put(exp) => put(&engine, CONN, fp.new_family(), exp).await,
            Knock::Idle(s) => sleep(Duration::from_secs(s)).await,
        }
        if !matches!(k, Knock::Idle(_)) {
            prop_assert!(
                t.elapsed() <= ON_DEMAND_DEADLINE + Duration::from_secs(1),
                "{k:?} took {:?}",
                t.elapsed()
            );
        }
    }
    // and three minutes of the scheduler alone
    sleep(Duration::from_secs(180)).await;
    let _ = stop.send(());
    let most = fp.most_calls_within(MINUTE);
    let times: Vec<u128> = fp.with(|s| {
        s.call_times
            .iter()
            .map(|t| t.duration_since(s.call_times[0]).as_millis())
            .collect()
    });
    prop_assert!(
        most <= MAX_CALLS_PER_MINUTE as usize,
        "{most} calls within a minute; calls at (ms) {times:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Issue 14: whatever a provider answers and whatever callers do (gets, forced gets,
    /// `refresh`, bursts, new tokens, the scheduler on its own), one connection never
    /// costs its provider more than `MAX_CALLS_PER_MINUTE` calls in any minute, and no
    /// on-demand request outlives its deadline.
    #[test]
    fn no_answer_sequence_makes_more_than_a_handful_of_calls_a_minute(
        script in proptest::collection::vec(answer(), 0..16),
        repeat in proptest::collection::vec(answer(), 1..4),
        lifetime in prop_oneof![Just(0u64), Just(1), Just(30), 0u64..7200],
        stored in prop_oneof![Just(0i64), Just(20), 0i64..7200],
        knocks in proptest::collection::vec((0u64..3000, knock()), 5..50),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(one_case(script, repeat, lifetime, stored, knocks))?;
    }
}
