//! Creating the click topic and the dead-letter topic: `analytics topics create`.
//!
//! The brokers in tests run with topic auto-creation off, as production brokers should
//! (a typo in a topic name must not create a topic with the broker's default partitions),
//! so topics are created on purpose, with the configured partitions and replication.
//! Running it again is safe: a topic that exists is reported, not changed.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::settings::KafkaSettings;

/// What creating one topic did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The topic was created.
    New,
    /// It already existed; left as it is.
    Existed,
}

/// Why topics could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// The admin client could not be built, or the request failed as a whole.
    #[error("kafka admin request failed")]
    Admin(#[source] KafkaError),
    /// The broker refused one topic.
    #[error("the broker refused topic {topic:?}: {code}")]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
    },
}

/// Creates `settings.topic` and `settings.dead_letter_topic` unless they exist.
pub async fn create(settings: &KafkaSettings) -> Result<Vec<(String, Created)>, TopicsError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .map_err(TopicsError::Admin)?;
    let partitions = i32::try_from(settings.partitions.get()).unwrap_or(i32::MAX);
    let replication = i32::try_from(settings.replication.get()).unwrap_or(i32::MAX);
    let topics = [
        NewTopic::new(
            &settings.topic,
            partitions,
            TopicReplication::Fixed(replication),
        ),
        // One partition: dead letters are rare and read by people.
        NewTopic::new(
            &settings.dead_letter_topic,
            1,
            TopicReplication::Fixed(replication),
        ),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(TopicsError::Admin)?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(topic) => Ok((topic, Created::New)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((topic, Created::Existed)),
            Err((topic, code)) => Err(TopicsError::Refused { topic, code }),
        })
        .collect()
}
