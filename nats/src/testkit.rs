//! Real `nats-server` processes on loopback, for the tests, the demo and the
//! benchmark (not part of the bridge's API).
//!
//! Each server listens on free 127.0.0.1 ports, keeps JetStream in a fresh
//! temporary directory, and is killed (and its directory removed) when its
//! guard is dropped, also when a test panics.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// What to tell a user without the server.
pub const INSTALL_HINT: &str = "nats-server was not found on PATH. The kvfeed-nats tests run against a real \
     server: install it with `apt-get install nats-server` (Debian/Ubuntu; CI's .ci/run does this), \
     or put a nats-server 2.9+ binary on PATH.";

/// A running `nats-server`; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// Cluster (route) port, when clustered.
    pub cluster_port: u16,
    /// The server's name.
    pub name: String,
    dir: PathBuf,
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "kvfeed-nats-{}-{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("create a temporary directory");
    d
}

impl NatsServer {
    /// One JetStream server.
    pub fn start() -> NatsServer {
        Self::spawn("solo", free_port(), None)
    }

    /// `n` JetStream servers forming one cluster (routes between all).
    pub fn cluster(n: usize) -> Vec<NatsServer> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("\"nats://127.0.0.1:{c}\""))
            .collect();
        ports
            .iter()
            .enumerate()
            .map(|(i, (p, c))| {
                Self::spawn(&format!("n{}", i + 1), *p, Some((*c, routes.join(", "))))
            })
            .collect()
    }

    fn spawn(name: &str, port: u16, cluster: Option<(u16, String)>) -> NatsServer {
        let dir = temp_dir(name);
        let mut conf = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n",
            dir.join("js").display()
        );
        let mut cluster_port = 0;
        if let Some((c, routes)) = &cluster {
            cluster_port = *c;
            conf.push_str(&format!(
                "cluster {{ name: kvfeed, listen: \"127.0.0.1:{c}\", routes: [{routes}] }}\n"
            ));
        }
        let conf_path = dir.join("server.conf");
        std::fs::write(&conf_path, conf).expect("write the server config");
        let mut child = match Command::new("nats-server")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("could not start nats-server: {e}"),
        };
        // Wait for "Server is ready" on its log (stderr), at most 20 s.
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server is ready") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let server = NatsServer {
            child: Some(child),
            port,
            cluster_port,
            name: name.to_string(),
            dir,
        };
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("nats-server {name} did not become ready on port {port}");
        }
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects to any of `urls`, reconnecting forever, with short timeouts.
pub async fn connect(urls: &[String]) -> Result<async_nats::Client, crate::Error> {
    let addrs: Vec<async_nats::ServerAddr> =
        urls.iter().map(|u| u.parse()).collect::<Result<_, _>>()?;
    Ok(async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(2)))
        .reconnect_delay_callback(|n| Duration::from_millis((50 * n as u64).min(500)))
        .connect(addrs)
        .await?)
}

/// A JetStream context with a 2 s timeout, once JetStream answers (a new
/// cluster needs a moment to elect its meta leader); tries for 30 s.
pub async fn jetstream(urls: &[String]) -> Result<async_nats::jetstream::Context, crate::Error> {
    let client = connect(urls).await?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    let mut last = None;
    for _ in 0..60 {
        match js.query_account().await {
            Ok(_) => return Ok(js),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("JetStream did not answer: {last:?}").into())
}

/// The scripted history the demo, the crash test and the benchmark write:
/// operation `i` on a store of `keys` keys. Deterministic, so a restarted
/// store process rebuilds the same seqs. `None` as value means delete.
pub fn scripted(i: u64, keys: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = format!("key/{:05}", i % keys.max(1)).into_bytes();
    if i % 10 == 9 {
        (key, None)
    } else {
        (key, Some(format!("v{i}").into_bytes()))
    }
}

/// Applies scripted operation `i` to `feed`.
pub fn apply_scripted(feed: &crate::ByteFeed, i: u64, keys: u64) {
    let (key, value) = scripted(i, keys);
    match value {
        Some(v) => {
            feed.put(key, v).expect("put");
        }
        None => {
            feed.delete(&key).expect("delete");
        }
    }
}
