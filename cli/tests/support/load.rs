//! Closed-loop load on a service: client threads sending GETs to whatever instances its
//! discovery records list.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use testkit::{EtcdCluster, http_get};

/// Closed-loop load: `clients` threads sending GETs to whatever instances discovery lists.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
    /// Requests that got no answer or an answer other than 200: when, where and what.
    failures: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Load {
    pub fn start(etcd: &EtcdCluster, cluster: &str, service: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let began = std::time::Instant::now();
        let targets = Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
        let mut threads = Vec::new();
        {
            // One thread refreshes the targets from discovery every 500 ms.
            let (stop, targets) = (stop.clone(), targets.clone());
            let endpoints = etcd.endpoints();
            let prefix = format!("/gru/{cluster}/discovery/{service}/");
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("etcdctl")
                        .env("ETCDCTL_API", "3")
                        .args([
                            &format!("--endpoints={endpoints}"),
                            "get",
                            "--prefix",
                            "--print-value-only",
                            &prefix,
                        ])
                        .output();
                    if let Ok(out) = out {
                        let ports: Vec<u16> = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .filter_map(|l| l.rsplit(':').next()?.trim().parse().ok())
                            .collect();
                        *targets.lock().unwrap() = ports;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                0
            }));
        }
        for client in 0..clients {
            let (stop, targets, failures) = (stop.clone(), targets.clone(), failures.clone());
            threads.push(std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ports = targets.lock().unwrap().clone();
                    if ports.is_empty() {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let port = ports[(client + sent as usize) % ports.len()];
                    let answer = http_get(port, "/");
                    if !matches!(answer, Some((200, _))) {
                        failures.lock().unwrap().push(format!(
                            "{:.1} s: port {port}: {}",
                            began.elapsed().as_secs_f64(),
                            answer.map_or("no answer".to_owned(), |(status, _)| format!(
                                "status {status}"
                            ))
                        ));
                    }
                    sent += 1;
                }
                sent
            }));
        }
        Load {
            stop,
            threads,
            failures,
        }
    }

    /// Stops the clients; the number of requests they sent.
    pub fn stop(self) -> u64 {
        self.stop_counting().0
    }

    /// Stops the clients; the number of requests they sent, and the failed ones (no answer,
    /// or not 200), each as "when: where: what".
    pub fn stop_counting(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .sum();
        (sent, std::mem::take(&mut *self.failures.lock().unwrap()))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
