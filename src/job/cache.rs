//! A small async memo: concurrent rows that need the same lookup (an alias, an email address)
//! wait for one request instead of each sending their own. Failures are not kept, so a lookup
//! that failed for a passing reason is tried again by the next row.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct Cache<V> {
    entries: Mutex<HashMap<String, Arc<OnceCell<V>>>>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Cache<V> {
    pub async fn get_or_try<E, F, Fut>(&self, key: &str, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = self
            .entries
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(fetch).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn one_fetch_per_key_and_failures_are_retried() {
        let cache: Cache<u32> = Cache::default();
        let calls = AtomicU32::new(0);
        let fetch = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                Err("passing failure")
            } else {
                Ok(7)
            }
        };
        assert_eq!(cache.get_or_try("a", fetch).await, Err("passing failure"));
        assert_eq!(cache.get_or_try("a", fetch).await, Ok(7));
        assert_eq!(cache.get_or_try("a", fetch).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
