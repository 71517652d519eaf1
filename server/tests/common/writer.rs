//! A background writer for the multi-member tests: puts keys through the live members until stopped, retrying a
//! failed put on the next member as etcd's clients do, and remembers which puts were acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server::proto::etcdserverpb::{PutRequest, kv_client::KvClient};

/// Puts keys round-robin through the live endpoints until stopped; a put that fails is retried on the next
/// endpoint for up to 10 s, as etcd's clients do.
pub struct Writer {
    stop: Arc<AtomicBool>,
    endpoints: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Writer {
    pub fn start(endpoints: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = Arc::new(Mutex::new(endpoints));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, e, a) = (Arc::clone(&stop), Arc::clone(&endpoints), Arc::clone(&acked));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(write_until(s, e, a))
        });
        Writer { stop, endpoints, acked, thread: Some(thread) }
    }

    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        *self.endpoints.lock().unwrap() = endpoints;
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the writer; the acknowledged keys, and how many puts failed for good.
    pub fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self.thread.take().unwrap().join().unwrap();
        (std::mem::take(&mut *self.acked.lock().unwrap()), failed)
    }
}

async fn write_until(
    stop: Arc<AtomicBool>,
    endpoints: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<String>>>,
) -> usize {
    let mut failed = 0;
    let mut n = 0u64;
    let mut turn = 0usize;
    let mut clients: std::collections::HashMap<String, KvClient<tonic::transport::Channel>> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("w/{n:07}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            turn += 1;
            let list = endpoints.lock().unwrap().clone();
            let endpoint = &list[turn % list.len()];
            let put = async {
                let kv = match clients.get_mut(endpoint) {
                    Some(kv) => kv,
                    None => {
                        let kv = KvClient::connect(format!("http://{endpoint}")).await.ok()?;
                        clients.entry(endpoint.clone()).or_insert(kv)
                    }
                };
                kv.put(PutRequest { key: key.clone().into(), value: b"v".to_vec(), ..Default::default() }).await.ok()
            };
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), put).await {
                acked.lock().unwrap().push(key);
                break;
            }
            // A fresh connection next time: this one may lead into a partition or to a stopped member.
            clients.remove(endpoint);
            if Instant::now() >= deadline {
                failed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    failed
}
