//! `Store` implementations on sqlx: Postgres for production and SQLite as the
//! embedded default. Both share their SQL through the `sql_store!` macro; only
//! connecting and migrating differ. `conformance` is the behavioural suite
//! both must pass.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aicc_core::{Store, StoreError};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub mod conformance;
mod sql;

pub struct PgStore {
    pool: sqlx::PgPool,
}

pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

impl PgStore {
    /// Connects and applies `migrations/postgres`. sqlx's migrator holds a
    /// Postgres advisory lock while it runs, so replicas may start together.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .acquire_timeout(Duration::from_secs(5))
            // A ping before every query doubles the round trips; a dead connection
            // fails its query instead and the pool replaces it.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to Postgres: {e}")))?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Internal(format!("Postgres migrations failed: {e}")))?;
        Ok(Self { pool })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies `migrations/sqlite`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Internal(format!("SQLite migrations failed: {e}")))?;
        Ok(Self { pool })
    }
}

/// Postgres when `database_url` is set, else SQLite at `<data_dir>/aicc.db`.
pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PgStore::connect(url).await?))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
        }
        Some(other) => Err(StoreError::Unavailable(format!(
            "DATABASE_URL must start with postgres:// or sqlite: (got `{}`)",
            aicc_core::settings::redact_url_password(other)
        ))),
        None => Ok(Arc::new(SqliteStore::open(&data_dir.join("aicc.db")).await?)),
    }
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
