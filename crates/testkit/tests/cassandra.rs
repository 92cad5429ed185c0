//! The kit's Cassandra answers the CQL driver the ScyllaDB backend will use: a session
//! connects and reads the server's release version.

use scylla::client::session_builder::SessionBuilder;

#[tokio::test]
async fn cassandra_answers_cql_with_its_release_version() {
    let Some(node) = shortener_testkit::cassandra::cassandra("cassandra smoke test") else {
        return;
    };
    let session = SessionBuilder::new()
        .known_node(node.node())
        .build()
        .await
        .expect("a CQL session");
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .expect("query")
        .into_rows_result()
        .expect("rows");
    let (version,): (String,) = rows.single_row().expect("one row");
    assert!(version.starts_with("5.0."), "{version}");
}
