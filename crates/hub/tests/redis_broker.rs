//! The Redis broker with a real redis-server (Debian `redis-server`) and two or three brokers,
//! each with its own `Hub`, as separate hub processes would have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protolab_hub::broker::{Broker, RedisBroker, RedisConfig};
use protolab_hub::{
    ChannelName, HistoryLimits, Hub, HubConfig, Level, Notification, Position, Publication, Since,
    Subscription,
};
use protolab_test_support::{RedisServer, RedisTls};
use tokio::sync::broadcast::error::RecvError;

const WAIT: Duration = Duration::from_secs(10);

fn publication(channel: &str, body: &str, key: Option<&str>) -> Publication {
    Publication {
        channel: channel.parse().expect("valid channel"),
        level: Level::Warning,
        title: String::new(),
        body: body.to_owned(),
        data: None,
        idempotency_key: key.map(str::to_owned),
    }
}

fn channel(name: &str) -> ChannelName {
    name.parse().expect("valid channel")
}

fn config(history: usize) -> HubConfig {
    HubConfig {
        history: HistoryLimits {
            max_len: history,
            ttl: Duration::from_secs(600),
        },
        ..HubConfig::default()
    }
}

async fn broker(redis: &RedisServer, hub_config: HubConfig) -> Broker {
    let mut config = RedisConfig::new(redis.url());
    config.timeout = Duration::from_secs(1);
    let hub = Arc::new(Hub::new(hub_config));
    Broker::Redis(
        RedisBroker::connect(config, hub)
            .await
            .expect("broker connects"),
    )
}

async fn next_live(subscription: &mut Subscription) -> Arc<Notification> {
    tokio::time::timeout(WAIT, subscription.live.recv())
        .await
        .expect("a live notification in time")
        .expect("not lagged")
}

async fn nothing_more(subscription: &mut Subscription) {
    let extra = tokio::time::timeout(Duration::from_millis(300), subscription.live.recv()).await;
    assert!(extra.is_err(), "unexpected extra delivery: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_other_brokers_get_every_publication_in_order_once() {
    let redis = RedisServer::start().await;
    let [a, b, c] = [
        broker(&redis, config(1000)).await,
        broker(&redis, config(1000)).await,
        broker(&redis, config(1000)).await,
    ];
    let ops = channel("ops");
    let mut on_b = b.subscribe(&ops, &Since::Now).await.expect("subscribe");
    let mut on_c = c.subscribe(&ops, &Since::Now).await.expect("subscribe");
    for n in 1..=60u64 {
        let from = if n % 2 == 0 { &a } else { &c };
        let published = from
            .publish(publication("ops", &format!("n{n}"), None))
            .await
            .expect("publish");
        assert_eq!((published.offset, published.duplicate), (n, false));
    }
    for subscription in [&mut on_b, &mut on_c] {
        for n in 1..=60u64 {
            let notification = next_live(subscription).await;
            assert_eq!(notification.offset, n);
            assert_eq!(notification.body, format!("n{n}"));
        }
        nothing_more(subscription).await;
    }
    let (recovery, position) = b.history(&ops, &Since::Start, 100).await.expect("history");
    assert_eq!(recovery.missed.len(), 60);
    assert_eq!(position.offset, 60);
    let channels = a.channels().await.expect("channels");
    assert_eq!(channels.len(), 1);
    assert_eq!((channels[0].offset, channels[0].history), (60, 60));
    assert!(b.ready().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_repeated_on_two_brokers_is_delivered_once() {
    let redis = RedisServer::start().await;
    let [a, b, c] = [
        broker(&redis, config(100)).await,
        broker(&redis, config(100)).await,
        broker(&redis, config(100)).await,
    ];
    let ops = channel("ops");
    let mut on_c = c.subscribe(&ops, &Since::Now).await.expect("subscribe");
    let first = a
        .publish(publication("ops", "disk full", Some("event-17")))
        .await
        .expect("publish");
    let again = b
        .publish(publication("ops", "disk full", Some("event-17")))
        .await
        .expect("publish");
    assert!(!first.duplicate && again.duplicate);
    // the broker that refused it counts it; every broker counts the one publication it received
    assert_eq!(b.hub().counts().1, 1);
    assert_eq!(a.hub().counts().1, 0);
    assert_eq!((again.offset, &again.epoch), (first.offset, &first.epoch));
    let other = b
        .publish(publication("ops", "disk ok", Some("event-18")))
        .await
        .expect("publish");
    assert_eq!(other.offset, 2);
    assert_eq!(next_live(&mut on_c).await.body, "disk full");
    assert_eq!(next_live(&mut on_c).await.body, "disk ok");
    nothing_more(&mut on_c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_loses_nothing_for_a_subscriber_back_with_its_position() {
    let redis = RedisServer::start().await;
    let a = broker(&redis, config(1000)).await;
    let ops = channel("ops");
    let position: Position = {
        let b = broker(&redis, config(1000)).await;
        let mut on_b = b.subscribe(&ops, &Since::Start).await.expect("subscribe");
        for n in 1..=5 {
            a.publish(publication("ops", &format!("n{n}"), None))
                .await
                .expect("publish");
        }
        let mut last = None;
        for _ in 0..5 {
            last = Some(next_live(&mut on_b).await.position());
        }
        last.expect("five notifications")
        // b, its hub and its listener are dropped here: a hub process that stopped
    };
    for n in 6..=9 {
        a.publish(publication("ops", &format!("n{n}"), None))
            .await
            .expect("publish");
    }
    let b = broker(&redis, config(1000)).await;
    let mut back = b
        .subscribe(&ops, &Since::Position(position))
        .await
        .expect("subscribe");
    assert!(back.recovery.recovered);
    let missed: Vec<u64> = back.recovery.missed.iter().map(|n| n.offset).collect();
    assert_eq!(missed, vec![6, 7, 8, 9]);
    assert_eq!(back.position.offset, 9);
    a.publish(publication("ops", "n10", None))
        .await
        .expect("publish");
    assert_eq!(next_live(&mut back).await.offset, 10);
    nothing_more(&mut back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_from_a_flushed_redis_is_not_recovered() {
    let redis = RedisServer::start().await;
    let [a, b] = [
        broker(&redis, config(100)).await,
        broker(&redis, config(100)).await,
    ];
    let ops = channel("ops");
    let old = a
        .publish(publication("ops", "before", None))
        .await
        .expect("publish");
    let mut on_b = b.subscribe(&ops, &Since::Now).await.expect("subscribe");
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .expect("FLUSHALL");
    let new = a
        .publish(publication("ops", "after", None))
        .await
        .expect("publish");
    assert_ne!(new.epoch, old.epoch);
    assert_eq!(new.offset, 1);
    // the live subscriber on b follows the channel into its new epoch
    let live = next_live(&mut on_b).await;
    assert_eq!((live.offset, &live.epoch), (1, &new.epoch));
    let stale = Position {
        epoch: old.epoch.clone(),
        offset: old.offset,
    };
    let back = b
        .subscribe(&ops, &Since::Position(stale))
        .await
        .expect("subscribe");
    assert!(!back.recovery.recovered);
    let missed: Vec<&str> = back
        .recovery
        .missed
        .iter()
        .map(|n| n.body.as_str())
        .collect();
    assert_eq!(missed, vec!["after"]);
    assert_eq!(back.position.epoch, new.epoch);
}

/// A subscriber that comes before the channel's first publish is told an epoch; the
/// publications must carry that one, so the position it holds (EPOCH:0) recovers everything
/// when it comes back, through WebSocket, SSE (`subscribe`) and socket.io (`catch_up`) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_before_the_first_publish_is_told_the_epoch_publications_carry() {
    let redis = RedisServer::start().await;
    let [a, b] = [
        broker(&redis, config(100)).await,
        broker(&redis, config(100)).await,
    ];
    let ops = channel("ops");
    let mut early = b.subscribe(&ops, &Since::Now).await.expect("subscribe");
    assert_eq!(early.position.offset, 0);
    let told = early.position.clone();
    // socket.io's path: the hub's own channel, brought to where Redis stands
    a.catch_up(&channel("story")).await.expect("catch up");
    let story_told = a.hub().position(&channel("story")).expect("story channel");

    let first = a
        .publish(publication("ops", "first", None))
        .await
        .expect("publish");
    assert_eq!(
        first.epoch, told.epoch,
        "the subscriber was told an epoch the publications do not carry"
    );
    assert_eq!(next_live(&mut early).await.epoch, told.epoch);
    let story = b
        .publish(publication("story", "first", None))
        .await
        .expect("publish");
    assert_eq!(story.epoch, story_told.epoch);

    // away before it saw anything, back with the position it was told
    drop(early);
    a.publish(publication("ops", "second", None))
        .await
        .expect("publish");
    let back = b
        .subscribe(&ops, &Since::Position(told))
        .await
        .expect("subscribe");
    assert!(back.recovery.recovered);
    let missed: Vec<&str> = back
        .recovery
        .missed
        .iter()
        .map(|n| n.body.as_str())
        .collect();
    assert_eq!(missed, ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_gives_errors_not_hangs_and_the_brokers_recover() {
    let mut redis = RedisServer::start().await;
    let [a, b] = [
        broker(&redis, config(100)).await,
        broker(&redis, config(100)).await,
    ];
    let ops = channel("ops");
    let mut on_b = b.subscribe(&ops, &Since::Now).await.expect("subscribe");
    a.publish(publication("ops", "one", None))
        .await
        .expect("publish");
    assert_eq!(next_live(&mut on_b).await.body, "one");

    redis.kill();
    let started = Instant::now();
    let error = a
        .publish(publication("ops", "lost", None))
        .await
        .expect_err("publishing with Redis down fails");
    let text = error.to_string();
    assert!(text.contains(&redis.url()), "{text}");
    assert!(b.ready().await.is_err());
    assert!(b.subscribe(&ops, &Since::Now).await.is_err());
    assert!(a.history(&ops, &Since::Start, 10).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "errors took {:?}",
        started.elapsed()
    );
    println!("with Redis down: {text}");

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let published = loop {
        match a.publish(publication("ops", "two", None)).await {
            Ok(published) => break published,
            Err(error) => {
                assert!(Instant::now() < deadline, "no recovery: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // an empty Redis: a new epoch, from offset 1
    assert_eq!(published.offset, 1);
    let live = next_live(&mut on_b).await;
    assert_eq!((live.body.as_str(), &live.epoch), ("two", &published.epoch));
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.ready().await.is_err() {
        assert!(Instant::now() < deadline, "b never became ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nothing_more(&mut on_b).await;
}

/// A small deterministic generator, so a failing run can be repeated.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Subscribes to `name` on `broker` until it has `total` offsets, dropping the subscription
/// after a random number of live notifications (or when it lags) and coming back with its
/// last position. Returns every offset received, in the order received.
async fn chaotic_subscriber(broker: Arc<Broker>, name: String, total: u64, seed: u64) -> Vec<u64> {
    let ops = channel(&name);
    let mut random = XorShift(seed | 1);
    let mut seen = Vec::new();
    let mut position: Option<Position> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut resubscribes = 0;
    while (seen.len() as u64) < total {
        assert!(
            Instant::now() < deadline,
            "{name}: stuck at {} of {total}",
            seen.len()
        );
        let since = position.clone().map_or(Since::Start, Since::Position);
        let mut subscription = broker.subscribe(&ops, &since).await.expect("subscribe");
        resubscribes += 1;
        assert!(
            subscription.recovery.recovered,
            "{name}: not recovered from {since:?}"
        );
        for notification in &subscription.recovery.missed {
            seen.push(notification.offset);
            position = Some(notification.position());
        }
        for _ in 0..=random.below(40) {
            if seen.len() as u64 >= total {
                break;
            }
            match tokio::time::timeout(WAIT, subscription.live.recv()).await {
                Ok(Ok(notification)) => {
                    seen.push(notification.offset);
                    position = Some(notification.position());
                }
                Ok(Err(RecvError::Lagged(_))) => break,
                Ok(Err(RecvError::Closed)) | Err(_) => {
                    panic!("{name}: live ended at {} of {total}", seen.len())
                }
            }
        }
    }
    assert!(resubscribes > 1);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_ten_thousand_publications_from_three_brokers_reach_every_dropping_subscriber_once_in_order(
) {
    const CHANNELS: u64 = 10;
    const PUBLICATIONS: u64 = 10_000;
    let per_channel = PUBLICATIONS / CHANNELS;
    let redis = RedisServer::start().await;
    let hub_config = HubConfig {
        subscriber_queue: 64,
        ..config(usize::try_from(PUBLICATIONS).expect("fits"))
    };
    let brokers = [
        Arc::new(broker(&redis, hub_config).await),
        Arc::new(broker(&redis, hub_config).await),
        Arc::new(broker(&redis, hub_config).await),
    ];
    let mut subscribers = Vec::new();
    for (b, broker) in brokers.iter().enumerate() {
        for c in 0..CHANNELS {
            let seed = (b as u64 + 1) * 1_000 + c;
            subscribers.push((
                b,
                c,
                tokio::spawn(chaotic_subscriber(
                    Arc::clone(broker),
                    format!("chaos{c}"),
                    per_channel,
                    seed,
                )),
            ));
        }
    }
    let started = Instant::now();
    let publishers: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(p, broker)| {
            let broker = Arc::clone(broker);
            tokio::spawn(async move {
                for i in (p as u64..PUBLICATIONS).step_by(brokers_len()) {
                    let name = format!("chaos{}", i % CHANNELS);
                    broker
                        .publish(publication(&name, &format!("n{i}"), None))
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    let published_in = started.elapsed();
    let expected: Vec<u64> = (1..=per_channel).collect();
    let mut counts = Vec::new();
    for (b, c, subscriber) in subscribers {
        let seen = subscriber.await.expect("subscriber");
        assert_eq!(seen, expected, "broker {b} channel chaos{c}");
        counts.push(format!("b{b}/chaos{c}={}", seen.len()));
    }
    println!(
        "chaos: {PUBLICATIONS} publications over {CHANNELS} channels from 3 brokers in {published_in:?}; every subscriber got every offset once, in order: {}",
        counts.join(" ")
    );
}

fn brokers_len() -> usize {
    3
}

/// `rediss://`: a redis-server serving TLS only with a certificate from protolab's CA
/// (protolab-tls, as `protolab certs issue` makes it). Brokers trusting that CA share fan-out
/// over TLS; one trusting another CA fails at connect with an error that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_with_the_labs_ca_and_another_ca_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lab = protolab_tls::Store::open(dir.path().join("lab"));
    lab.ensure_ca().expect("lab CA");
    let leaf = lab.issue(&["127.0.0.1".to_owned()]).expect("leaf");
    let redis = RedisServer::start_tls(RedisTls {
        cert: leaf.cert_path,
        key: leaf.key_path,
        ca: lab.ca_cert_path(),
    })
    .await;
    assert!(redis.url().starts_with("rediss://"));
    let tls_broker = |ca: std::path::PathBuf| {
        let mut config = RedisConfig::new(redis.url());
        config.timeout = Duration::from_secs(2);
        config.ca_pem = Some(std::fs::read(ca).expect("CA file"));
        RedisBroker::connect(config, Arc::new(Hub::new(HubConfig::default())))
    };
    let a = Broker::Redis(tls_broker(lab.ca_cert_path()).await.expect("a over TLS"));
    let b = Broker::Redis(tls_broker(lab.ca_cert_path()).await.expect("b over TLS"));
    let ops = channel("ops");
    let mut on_b = b.subscribe(&ops, &Since::Now).await.expect("subscribe");
    let published = a
        .publish(publication("ops", "over TLS", None))
        .await
        .expect("publish");
    let live = next_live(&mut on_b).await;
    assert_eq!(
        (live.offset, live.body.as_str()),
        (published.offset, "over TLS")
    );
    assert!(b.ready().await.is_ok());

    let other = protolab_tls::Store::open(dir.path().join("other"));
    other.ensure_ca().expect("other CA");
    let started = Instant::now();
    let error = tls_broker(other.ca_cert_path())
        .await
        .expect_err("a CA that did not sign Redis's certificate");
    let text = error.to_string();
    println!("with another CA: {text}");
    assert!(started.elapsed() < Duration::from_secs(10), "{text}");
    assert!(text.contains(&redis.url()), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("--redis-ca"), "{text}");
}
