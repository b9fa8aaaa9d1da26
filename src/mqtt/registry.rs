//! Which connection holds which client id, so a second CONNECT with the same id takes the
//! session over (MQTT 3.1.1 section 3.1.4: the server disconnects the existing client).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Registry {
    clients: Mutex<HashMap<String, (u64, Arc<Notify>)>>,
}

impl Registry {
    /// Registers `client_id` for `conn_id`, kicking any connection that held it. Returns
    /// the notifier this connection must watch to learn it was kicked.
    pub fn claim(&self, client_id: &str, conn_id: u64) -> Arc<Notify> {
        let kick = Arc::new(Notify::new());
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, old)) = map.insert(client_id.to_string(), (conn_id, kick.clone())) {
            old.notify_one();
        }
        kick
    }

    /// Removes `client_id` if `conn_id` still holds it.
    pub fn release(&self, client_id: &str, conn_id: u64) {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(client_id).is_some_and(|(c, _)| *c == conn_id) {
            map.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_claim_kicks_the_first() {
        let r = Registry::default();
        let k1 = r.claim("dev", 1);
        let _k2 = r.claim("dev", 2);
        tokio::time::timeout(std::time::Duration::from_secs(1), k1.notified())
            .await
            .unwrap();
        r.release("dev", 1); // no longer holds it: no effect
        assert!(r.clients.lock().unwrap().contains_key("dev"));
        r.release("dev", 2);
        assert!(r.clients.lock().unwrap().is_empty());
    }
}
