//! The store's one error type.

/// Why a store operation failed. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, migrated or queried.
    #[error("store: {0}")]
    Database(String),
    /// The master key is missing, unreadable or not the one the secrets were sealed with.
    #[error("master key: {0}")]
    Key(String),
    /// A sealed value did not open, or sealing failed.
    #[error("encryption: {0}")]
    Crypto(String),
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (a name already taken).
    #[error("{0}")]
    Conflict(String),
    /// The input is invalid; every problem is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error
            && db.is_unique_violation()
        {
            return StoreError::Conflict(format!("already exists ({})", db.message()));
        }
        StoreError::Database(error.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {error}"))
    }
}
