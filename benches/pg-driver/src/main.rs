//! Why the PostgreSQL backend uses tokio-postgres with a deadpool pool, not sqlx: the
//! same point read (a primary-key lookup, what a redirect does on a cache miss) through
//! both, one at a time (latency: the driver's own overhead per round trip) and from 64
//! tasks over a pool of 16 connections (throughput: the pools). Both drivers prepare the
//! statement once per connection and reuse it, and neither pool tests a connection with
//! a round trip before handing it out.
//!
//! Run against a database you can write a table into:
//! `DATABASE_URL=postgres://... cargo run --release -p pg-driver`
//! (`scripts/bench-pg-driver.sh` starts a throwaway PostgreSQL and does that).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

const ROWS: usize = 100_000;
const SEQUENTIAL: usize = 20_000;
const TASKS: usize = 64;
const PER_TASK: usize = 1_000;
const POOL: usize = 16;
const ROUNDS: usize = 5;
const QUERY: &str = "SELECT target FROM driver_bench WHERE code = $1";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn code(i: usize) -> String {
    format!("c{:07}", (i * 7919) % ROWS)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn seed(pool: &deadpool_postgres::Pool) -> Result<(), Error> {
    let client = pool.get().await?;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS driver_bench;
             CREATE TABLE driver_bench (code text COLLATE \"C\" PRIMARY KEY, target text NOT NULL);
             INSERT INTO driver_bench SELECT 'c' || lpad(i::text, 7, '0'),
                 'https://example.com/landing/' || i FROM generate_series(0, {}) i;",
            ROWS - 1
        ))
        .await?;
    client.batch_execute("VACUUM ANALYZE driver_bench").await?;
    Ok(())
}

/// Microseconds per read, one read at a time.
async fn sequential_tokio_postgres(pool: &deadpool_postgres::Pool) -> Result<f64, Error> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(QUERY).await?;
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        let row = client.query_opt(&statement, &[&code(i)]).await?;
        assert!(row.is_some());
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / SEQUENTIAL as f64)
}

async fn sequential_sqlx(pool: &sqlx::PgPool) -> Result<f64, Error> {
    let mut connection = pool.acquire().await?;
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        let row: Option<(String,)> = sqlx::query_as(QUERY)
            .bind(code(i))
            .fetch_optional(&mut *connection)
            .await?;
        assert!(row.is_some());
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / SEQUENTIAL as f64)
}

/// Reads per second, TASKS tasks each taking a connection from `pool` per read; `read`
/// answers whether the row was found.
async fn concurrent<P, F, Fut>(pool: &P, read: F) -> Result<f64, Error>
where
    P: Clone + Send + 'static,
    F: Fn(P, String) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<bool, Error>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    assert!(read(pool.clone(), code(t * PER_TASK + i)).await?);
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((TASKS * PER_TASK) as f64 / started.elapsed().as_secs_f64())
}

async fn read_tokio_postgres(pool: deadpool_postgres::Pool, code: String) -> Result<bool, Error> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(QUERY).await?;
    Ok(client.query_opt(&statement, &[&code]).await?.is_some())
}

async fn read_sqlx(pool: sqlx::PgPool, code: String) -> Result<bool, Error> {
    let row: Option<(String,)> = sqlx::query_as(QUERY)
        .bind(code)
        .fetch_optional(&pool)
        .await?;
    Ok(row.is_some())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let config: tokio_postgres::Config = url.parse()?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let deadpool = deadpool_postgres::Pool::builder(manager)
        .max_size(POOL)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .build()?;
    let sqlx = Arc::new(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(POOL as u32)
            // Like deadpool's `RecyclingMethod::Fast`: no round trip to test a pooled
            // connection before handing it out (sqlx's default sends one per acquire).
            .test_before_acquire(false)
            .connect(&url)
            .await?,
    );
    seed(&deadpool).await?;

    let (mut seq_tp, mut seq_sqlx, mut con_tp, mut con_sqlx) = (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        // Alternate which goes first, so drift in the machine's speed hits both alike.
        let (a, b) = if round % 2 == 1 {
            let a = sequential_tokio_postgres(&deadpool).await?;
            (a, sequential_sqlx(&sqlx).await?)
        } else {
            let b = sequential_sqlx(&sqlx).await?;
            (sequential_tokio_postgres(&deadpool).await?, b)
        };
        let c = concurrent(&deadpool, read_tokio_postgres).await?;
        let d = concurrent(&*sqlx, read_sqlx).await?;
        println!(
            "round {round}: one at a time: tokio-postgres {a:.1} us, sqlx {b:.1} us; \
             {TASKS} tasks over {POOL} connections: deadpool {c:.0}/s, sqlx {d:.0}/s"
        );
        seq_tp.push(a);
        seq_sqlx.push(b);
        con_tp.push(c);
        con_sqlx.push(d);
    }
    let (a, b, c, d) = (
        median(seq_tp),
        median(seq_sqlx),
        median(con_tp),
        median(con_sqlx),
    );
    println!(
        "medians of {ROUNDS}: one at a time: tokio-postgres {a:.1} us, sqlx {b:.1} us (sqlx / tokio-postgres {:.2}); \
         concurrent: tokio-postgres+deadpool {c:.0}/s, sqlx {d:.0}/s (sqlx / tokio-postgres {:.2})",
        b / a,
        d / c
    );
    Ok(())
}
