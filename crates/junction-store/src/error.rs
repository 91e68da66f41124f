//! The store's one error type.

/// Why a store operation failed. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, migrated or queried.
    #[error("store: {0}")]
    Database(String),
    /// The database cannot be reached now (refused, cut off, shutting down, out of
    /// connections): worth retrying soon.
    #[error("store unreachable: {0}")]
    Unavailable(String),
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
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("already exists ({})", db.message()))
            }
            // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server shuts
            // down or is starting), 53300 (too many connections).
            sqlx::Error::Database(db)
                if db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
                }) =>
            {
                StoreError::Unavailable(error.to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable_not_a_failure() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [
            sqlx::Error::Io(refused),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
        ] {
            assert!(matches!(
                StoreError::from(error),
                StoreError::Unavailable(_)
            ));
        }
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
    }
}
