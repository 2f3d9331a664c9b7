//! One lazily opened, self-reconnecting Redis connection with a deadline on every call,
//! for the shared quota and rate stores (the slot pool keeps its own, beside its undo
//! bookkeeping).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::PoolError;

pub(crate) struct Conn {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

impl Conn {
    /// Fails only on a malformed URL; connects at the first call, so it can be made while
    /// Redis is down.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, PoolError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: tokio::sync::Mutex::new(None),
            timeout,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, PoolError> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| PoolError::Timeout(self.timeout))??;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a script (EVALSHA, loading it again after a server restart), abandoned after
    /// the call timeout.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, PoolError> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| PoolError::Timeout(self.timeout))?
            .map_err(PoolError::from)
    }
}

/// Blocking: does the server at `url` answer PING within `timeout`? For the check at
/// start that names an unreachable URL's field.
pub(crate) fn ping(url: &str, timeout: Duration) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(timeout)
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query::<String>(&mut conn)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
