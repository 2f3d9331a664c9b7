//! The shared slot pool (issue 10), against a real redis-server the test starts: the cap
//! holds across pools, expired leases come back, renewals never re-take a lost lease,
//! releases are idempotent and say when a lease had expired, fencing tokens only grow,
//! a lost acquire leaves nothing held, and deadlines come from the server's clock.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use weir_actors::redis_pool::{PoolError, PoolSettings, RedisPool, Released};

fn pool(server: &RedisServer, cap: u32, ttl: Duration) -> RedisPool {
    RedisPool::new(PoolSettings {
        url: server.url(),
        key_prefix: "test".into(),
        resource: "store".into(),
        cap,
        lease_ttl: ttl,
        op_timeout: Duration::from_secs(2),
    })
    .unwrap()
}

fn ids(got: &weir_actors::redis_pool::Acquired) -> Vec<String> {
    got.leases.iter().map(|l| l.id.clone()).collect()
}

fn server_ms(conn: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
    s * 1000 + us / 1000
}

#[tokio::test]
async fn the_cap_holds_across_pools_and_batches_grant_in_one_call() {
    let server = RedisServer::start();
    let (a, b) = (
        pool(&server, 5, Duration::from_secs(30)),
        pool(&server, 5, Duration::from_secs(30)),
    );
    let got_a = a.acquire(4).await.unwrap();
    let got_b = b.acquire(4).await.unwrap();
    assert_eq!(got_a.leases.len(), 4);
    assert_eq!(got_b.leases.len(), 1, "only one slot was left");
    assert_eq!(b.acquire(3).await.unwrap().leases.len(), 0);
    assert_eq!(a.held().await.unwrap(), 5);
    a.release(&ids(&got_a)).await.unwrap();
    assert_eq!(b.acquire(10).await.unwrap().leases.len(), 4);
}

#[tokio::test]
async fn fencing_tokens_only_grow_even_when_redis_loses_its_data() {
    let mut server = RedisServer::start();
    let (a, b) = (
        pool(&server, 100, Duration::from_secs(30)),
        pool(&server, 100, Duration::from_secs(30)),
    );
    let mut tokens = Vec::new();
    for i in 0..10 {
        let p = if i % 2 == 0 { &a } else { &b };
        let got = p.acquire(3).await.unwrap();
        tokens.extend(got.leases.iter().map(|l| l.token));
        p.release(&ids(&got)).await.unwrap();
    }
    server.restart(); // empty dataset: the counter is gone
    let after = loop {
        match a.acquire(1).await {
            Ok(got) => break got.leases[0].token,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await, // reconnecting
        }
    };
    tokens.push(after);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
}

#[tokio::test]
async fn a_dead_holders_leases_are_reclaimed_at_acquire_after_their_ttl() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(300);
    let dead = pool(&server, 5, ttl);
    let live = pool(&server, 5, ttl);
    assert_eq!(dead.acquire(5).await.unwrap().leases.len(), 5);
    assert!(
        live.acquire(1).await.unwrap().leases.is_empty(),
        "full before the ttl"
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let got = live.acquire(5).await.unwrap();
    assert_eq!(got.leases.len(), 5);
    assert_eq!(got.reclaimed, 5);
}

#[tokio::test]
async fn renewal_extends_a_held_lease_and_never_retakes_a_lost_one() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(400);
    let a = pool(&server, 1, ttl);
    let b = pool(&server, 1, ttl);
    let lease = ids(&a.acquire(1).await.unwrap());
    // Renewed every 150 ms for 1 s: it outlives its ttl and keeps the slot.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(a.renew(&lease).await.unwrap(), vec![true]);
        assert!(b.acquire(1).await.unwrap().leases.is_empty());
    }
    // Not renewed past its ttl: lost, and the slot goes to another holder.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(a.renew(&lease).await.unwrap(), vec![false]);
    assert_eq!(b.acquire(1).await.unwrap().leases.len(), 1);
    assert_eq!(
        a.renew(&lease).await.unwrap(),
        vec![false],
        "a lost lease stays lost"
    );
    assert_eq!(a.held().await.unwrap(), 1, "only b holds the slot");
}

#[tokio::test]
async fn release_is_idempotent_and_says_when_the_lease_had_expired() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(200);
    let a = pool(&server, 5, ttl);
    let got = ids(&a.acquire(2).await.unwrap());
    assert_eq!(a.release(&got[..1]).await.unwrap(), vec![Released::Held]);
    assert_eq!(a.release(&got[..1]).await.unwrap(), vec![Released::NotHeld]);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(a.release(&got[1..]).await.unwrap(), vec![Released::Expired]);
    assert_eq!(a.release(&got[1..]).await.unwrap(), vec![Released::NotHeld]);
    assert_eq!(a.held().await.unwrap(), 0);
}

#[tokio::test]
async fn an_acquire_whose_answer_is_lost_leaves_nothing_held() {
    let server = RedisServer::start();
    let a = pool(&server, 5, Duration::from_secs(60));
    // Connected, and the acquire script cached on the server (so the paused call is the
    // script itself, not a cache miss that the client would have to follow up).
    let warm = ids(&a.acquire(1).await.unwrap());
    a.release(&warm).await.unwrap();
    let mut admin = server.connection();
    // Redis holds every write (scripts included) for 500 ms: the acquire reaches the
    // server, the caller gives up, and the server runs the script afterwards.
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "500", "WRITE"])
        .query(&mut admin)
        .unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(100), a.acquire(3)).await;
    assert!(timed_out.is_err(), "the acquire should still be waiting");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let raw: u64 = redis::cmd("ZCARD").arg(a.leases_key()).query(&mut admin).unwrap();
    assert_eq!(raw, 3, "the server did grant the abandoned acquire");
    // The next call on the pool releases them before anything else.
    assert_eq!(a.held().await.unwrap(), 0);
    let raw: u64 = redis::cmd("ZCARD").arg(a.leases_key()).query(&mut admin).unwrap();
    assert_eq!(raw, 0);
}

#[tokio::test]
async fn an_acquire_that_fails_reports_it_and_holds_nothing() {
    let mut server = RedisServer::start();
    let a = pool(&server, 5, Duration::from_secs(60));
    server.stop();
    let e = a.acquire(2).await.unwrap_err();
    assert!(matches!(e, PoolError::Redis(_) | PoolError::Timeout(_)), "{e}");
    server.restart();
    let held = loop {
        match a.held().await {
            Ok(n) => break n,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(held, 0);
}

#[tokio::test]
async fn deadlines_come_from_the_servers_clock() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(60);
    let a = pool(&server, 5, ttl);
    let mut admin = server.connection();
    let before = server_ms(&mut admin);
    let got = a.acquire(1).await.unwrap();
    let after = server_ms(&mut admin);
    let deadline: u64 = redis::cmd("ZSCORE")
        .arg(a.leases_key())
        .arg(&got.leases[0].id)
        .query(&mut admin)
        .unwrap();
    assert!(
        (before + 60_000..=after + 60_000).contains(&deadline),
        "deadline {deadline} not within the server's [{before}, {after}] + ttl"
    );
}
