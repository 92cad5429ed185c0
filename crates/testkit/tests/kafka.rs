//! The kit's Kafka answers a real client: a topic is created, a message produced with the
//! settings the service's producer will use (idempotent, `acks=all`) and consumed back.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[tokio::test]
async fn kafka_takes_a_topic_and_gives_back_what_was_produced() {
    let Some(kafka) = shortener_testkit::kafka::kafka("kafka smoke test") else {
        return;
    };
    let config = |extra: &[(&str, &str)]| {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", kafka.bootstrap());
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
    };
    let admin: AdminClient<DefaultClientContext> = config(&[]).create().expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new("smoke", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let producer: BaseProducer = config(&[("enable.idempotence", "true"), ("acks", "all")])
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::to("smoke").key("code").payload("hello"))
        .map_err(|(error, _)| error)
        .expect("queue the message");
    producer.flush(Duration::from_secs(30)).expect("delivered");

    let consumer: BaseConsumer =
        config(&[("group.id", "smoke"), ("auto.offset.reset", "earliest")])
            .create()
            .expect("consumer");
    consumer.subscribe(&["smoke"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let payload = loop {
        assert!(Instant::now() < deadline, "nothing consumed in time");
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("a message, not an error");
            break message.payload().map(<[u8]>::to_vec);
        }
    };
    assert_eq!(payload.as_deref(), Some(&b"hello"[..]));
}
