//! Load generator: drives `tools/call` of a read-only tool over MCP streamable HTTP with N
//! concurrent connections against
//!   (a) keyward with authentication, the guard and the audit trail on (`serve --stateless`),
//!   (b) a bare rmcp streamable-HTTP server with one trivial tool (`examples/bare_server.rs`),
//! in the same run, alternating rounds, and prints requests/s, p50/p99 latency and a/b.
//! It also reports keyward's resident memory when idle and after the load.
//!
//! The generator runs on the same machine, so each round also reports how busy the machine
//! was, the generator's own CPU per call, and the calls a second the round's CPU per call
//! (server, PostgreSQL and generator together) would allow with every core busy. From the
//! last, an estimate of the a/b that (a) could reach if it left no core idle: a target well
//! above it needs less CPU per call, not only less waiting.
//!
//!     cargo build --release --examples && cargo run --release --example load
//!     cargo run --release --example load -- --connections 32 --seconds 5 --rounds 3
//!     cargo run --release --example load -- --database-url postgres://postgres@127.0.0.1/kw_load
//!     cargo run --release --example load -- --target http://127.0.0.1:19287/mcp --key kw_…
//!     cargo run --release --example load -- --keyward /tmp/keyward-before   # another build as (a)
//!     cargo run --release --example load -- --oauth   # also (a') keyward with an OAuth access token
//!     cargo run --release --example load -- --encrypt   # keyward with encryption at rest
//!     cargo run --release --example load -- --compare /tmp/keyward-before   # (c): another build
//!     cargo run --release --example load -- --database-url postgres://… --replicas 2
//!
//! With `--compare`, another keyward build runs beside this one (each on its own fresh SQLite
//! database) and every round measures both, in alternating order, and bare: the two builds'
//! ratios come from the same minutes, and the report gives the median of the per-round
//! differences, so drift in the machine's speed between runs does not enter the comparison.
//!
//! With `--replicas N` (PostgreSQL only), (a) is N stateless keyward processes on the one
//! database, the connections split evenly between them, measured at the same time; after the
//! rounds the trail is counted against the calls answered (every answered call must have its
//! record: lost = answered − recorded).
//!
//! Requests are self-contained 2026-07-28 calls (no session), answered as plain JSON.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args {
    connections: usize,
    seconds: u64,
    rounds: usize,
    database_url: Option<String>,
    /// Drive an already-running keyward at this MCP URL instead (e.g. under a profiler).
    target: Option<String>,
    key: Option<String>,
    /// Another keyward binary to measure as (a), e.g. a build kept from before a change.
    keyward: Option<PathBuf>,
    /// Also measure keyward called with an OAuth access token (got through the browser flow,
    /// signing in with the bootstrap key) in every round.
    oauth: bool,
    /// Run keyward with encryption at rest (a fresh key in KEYWARD_ENCRYPTION_KEY).
    encrypt: bool,
    /// Another keyward build measured as (c) in every round, beside (a) and (b).
    compare: Option<PathBuf>,
    /// Stateless keyward processes on the one PostgreSQL database measured together as (a).
    replicas: usize,
}

fn args() -> Args {
    let mut a = Args {
        connections: 32,
        seconds: 5,
        rounds: 3,
        database_url: None,
        target: None,
        key: None,
        keyward: None,
        oauth: false,
        encrypt: false,
        compare: None,
        replicas: 1,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--connections" => a.connections = value.parse().unwrap_or(a.connections),
            "--seconds" => a.seconds = value.parse().unwrap_or(a.seconds),
            "--rounds" => a.rounds = value.parse().unwrap_or(a.rounds),
            "--database-url" => a.database_url = Some(value),
            "--target" => a.target = Some(value),
            "--key" => a.key = Some(value),
            "--keyward" => a.keyward = Some(PathBuf::from(value)),
            "--compare" => a.compare = Some(PathBuf::from(value)),
            "--replicas" => a.replicas = value.parse().unwrap_or(1).max(1),
            "--oauth" => {
                a.oauth = true;
                i += 1;
                continue;
            }
            "--encrypt" => {
                a.encrypt = true;
                i += 1;
                continue;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

/// Binaries built next to this example: target/<profile>/{keyward, examples/bare_server}.
fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let examples = exe.parent().map(PathBuf::from).unwrap_or_default();
    match name {
        "keyward" => examples
            .parent()
            .map(|p| p.join("keyward"))
            .unwrap_or_default(),
        _ => examples.join(name),
    }
}

/// A child server, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits for its "listening on http://…/mcp" line on stderr (stderr is drained
/// in the background afterwards so the server never blocks on it).
fn start(mut cmd: Command) -> anyhow::Result<Server> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(pos) = line.find("listening on http://")
                && let Some(t) = tx.take()
            {
                let url = line[pos + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = t.send(url);
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30))?;
    Ok(Server { child, url })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used so far, from /proc (clock ticks at 100 Hz).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at ") ".
            let rest = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The machine's CPU ticks so far, over every core, from /proc/stat: (busy, all). Idle and
/// I/O wait are not busy.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // cpu  user nice system idle iowait irq softirq steal
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let all: u64 = f.iter().sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (all.saturating_sub(idle), all)
}

/// CPU ticks of every PostgreSQL process on this machine (backends, WAL writer,
/// checkpointer): the database's own cost, when it runs here.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("postgres"))
        })
        .map(cpu_ticks)
        .sum()
}

fn call_body(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "whoami", "arguments": {},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "keyward-load", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
    .to_string()
}

#[derive(Default)]
struct Round {
    ok: u64,
    failed: u64,
    server_errors: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Server CPU ticks (1/100 s) used during the round.
    cpu_ticks: u64,
    /// PostgreSQL's CPU ticks during the round (when it runs on this machine).
    db_ticks: u64,
    /// This load generator's own CPU ticks during the round: it shares the machine.
    gen_ticks: u64,
    /// The machine's busy and total CPU ticks (every core) during the round.
    busy_ticks: u64,
    all_ticks: u64,
}

impl Round {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut v = self.latencies.clone();
        v.sort_unstable();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }

    fn merge(&mut self, other: Round) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.server_errors += other.server_errors;
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
        self.cpu_ticks += other.cpu_ticks;
        self.db_ticks += other.db_ticks;
        self.gen_ticks += other.gen_ticks;
        self.busy_ticks += other.busy_ticks;
        self.all_ticks += other.all_ticks;
    }

    /// Adds a round run at the same time against another replica.
    fn beside(&mut self, other: Round) {
        let elapsed = self.elapsed.max(other.elapsed);
        // Rounds run together each measured the whole generator and machine over about the
        // same time: kept once, not added.
        let (gen_ticks, busy, all) = (
            self.gen_ticks.max(other.gen_ticks),
            self.busy_ticks.max(other.busy_ticks),
            self.all_ticks.max(other.all_ticks),
        );
        self.merge(other);
        (self.gen_ticks, self.busy_ticks, self.all_ticks) = (gen_ticks, busy, all);
        self.elapsed = elapsed;
    }

    /// `ticks` (1/100 s) per answered call, in microseconds.
    fn per_call_us(&self, ticks: u64) -> f64 {
        ticks as f64 * 10_000.0 / self.ok.max(1) as f64
    }

    /// Server CPU per answered call, in microseconds.
    fn cpu_per_call_us(&self) -> f64 {
        self.per_call_us(self.cpu_ticks)
    }

    /// PostgreSQL's CPU per answered call, in microseconds.
    fn db_per_call_us(&self) -> f64 {
        self.per_call_us(self.db_ticks)
    }

    /// The load generator's CPU per answered call, in microseconds.
    fn gen_per_call_us(&self) -> f64 {
        self.per_call_us(self.gen_ticks)
    }

    /// The share of the machine's CPU that was busy.
    fn busy(&self) -> f64 {
        self.busy_ticks as f64 / self.all_ticks.max(1) as f64
    }

    /// Calls a second the machine could answer with every core busy, at the round's CPU per
    /// call of the server, the database and the generator together. An estimate, not a bound:
    /// busier cores add contention, but fewer waits would also take some CPU off a call (the
    /// generator's own cost grows while it waits for answers). Steal time counts as busy.
    fn ceiling(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let per_call = self.cpu_per_call_us() + self.db_per_call_us() + self.gen_per_call_us();
        cores * 1e6 / per_call.max(f64::MIN_POSITIVE)
    }
}

/// One timed round: `connections` clients, each with one keep-alive connection, calling in a
/// loop for `seconds`.
async fn round(url: &str, bearer: Option<&str>, connections: usize, seconds: u64) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let gen_before = cpu_ticks(std::process::id());
    let machine_before = machine_ticks();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let Ok(client) = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()
        else {
            continue;
        };
        let (url, bearer, stop) = (url.to_owned(), bearer.map(str::to_owned), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = Round::default();
            let mut id = (c as u64) << 32;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "whoami")
                    .body(call_body(id));
                if let Some(b) = &bearer {
                    req = req.header("authorization", format!("Bearer {b}"));
                }
                let t0 = Instant::now();
                match req.send().await {
                    Ok(res) => {
                        let status = res.status();
                        let body: Value = res.json().await.unwrap_or(Value::Null);
                        let good = status.is_success()
                            && body["result"].is_object()
                            && body["result"]["isError"] != true;
                        if status.is_server_error() {
                            r.server_errors += 1;
                        }
                        if good {
                            r.ok += 1;
                            r.latencies.push(t0.elapsed());
                        } else {
                            r.failed += 1;
                        }
                    }
                    Err(_) => r.failed += 1,
                }
            }
            r
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Round::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.merge(r);
        }
    }
    total.elapsed = started.elapsed();
    total.gen_ticks = cpu_ticks(std::process::id()).saturating_sub(gen_before);
    let machine_after = machine_ticks();
    total.busy_ticks = machine_after.0.saturating_sub(machine_before.0);
    total.all_ticks = machine_after.1.saturating_sub(machine_before.1);
    total
}

/// Times one round against `servers` at once (the connections split evenly between them,
/// the remainder one each to the first) and adds the CPU their processes used meanwhile, and
/// PostgreSQL's when `on_postgres`. Every server of a run, whatever its role, is measured
/// through here, so no role is measured differently from another.
async fn measured(
    servers: &[(String, u32)],
    bearer: Option<&str>,
    connections: usize,
    seconds: u64,
    on_postgres: bool,
) -> Round {
    let ticks = || servers.iter().map(|(_, pid)| cpu_ticks(*pid)).sum::<u64>();
    let before = ticks();
    let db_before = on_postgres.then(postgres_ticks);
    let n = servers.len().max(1);
    let (share, extra) = (connections / n, connections % n);
    let rounds = servers.iter().enumerate().map(|(i, (url, _))| {
        round(
            url,
            bearer,
            (share + usize::from(i < extra)).max(1),
            seconds,
        )
    });
    let mut total = Round::default();
    for r in futures::future::join_all(rounds).await {
        total.beside(r);
    }
    total.cpu_ticks = ticks().saturating_sub(before);
    if let Some(db_before) = db_before {
        total.db_ticks = postgres_ticks().saturating_sub(db_before);
    }
    total
}

fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("name=\"{name}\" value=\"");
    html.find(&marker)
        .map(|i| &html[i + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

/// An access token for `mcp_url`'s server, through the whole OAuth flow as a browser would go
/// through it: register, authorize with PKCE, sign in with `key`, approve, exchange the code.
async fn oauth_token(mcp_url: &str, key: &str) -> anyhow::Result<String> {
    use base64::Engine;
    use sha2::Digest;
    let issuer = mcp_url.trim_end_matches("/mcp");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let redirect = "http://127.0.0.1:9/callback";
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"client_name": "load", "redirect_uris": [redirect],
                      "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await?
        .json()
        .await?;
    let client_id = reg["client_id"].as_str().unwrap_or_default().to_owned();
    let verifier = "load-verifier-0123456789-0123456789-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let page = http
        .get(format!("{issuer}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", redirect),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "load"),
        ])
        .send()
        .await?;
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let html = page.text().await?;
    let (request_id, csrf) = (
        field(&html, "request_id").to_owned(),
        field(&html, "csrf_token").to_owned(),
    );
    let form = |extra: &[(&str, &str)]| {
        let mut f = vec![
            ("request_id", request_id.as_str()),
            ("csrf_token", csrf.as_str()),
        ];
        f.extend_from_slice(extra);
        f.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    http.post(format!("{issuer}/authorize/sign-in"))
        .header("origin", issuer)
        .header("cookie", &cookie)
        .form(&form(&[("api_key", key), ("method", "api_key")]))
        .send()
        .await?
        .error_for_status()?;
    let done = http
        .post(format!("{issuer}/authorize/decision"))
        .header("origin", issuer)
        .header("cookie", &cookie)
        .form(&form(&[("decision", "approve"), ("role", "")]))
        .send()
        .await?;
    let location = done
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let code = url::Url::parse(location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let tokens: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", &client_id),
            ("code_verifier", verifier),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(token.starts_with("kwat_"), "no access token: {tokens}");
    Ok(token)
}

/// The admin key a bootstrap printed: its secret and its id.
struct Admin {
    key: String,
    id: String,
}

/// `bin` with the database, signing key and encryption key (or none at all: set but empty is
/// refused) in its environment.
fn keyward_command(
    bin: &std::path::Path,
    db: &str,
    signing_key: &std::path::Path,
    encryption_key: Option<&str>,
) -> Command {
    let mut c = Command::new(bin);
    c.env("KEYWARD_DATABASE_URL", db)
        .env("KEYWARD_AUDIT_SIGNING_KEY", signing_key)
        .env_remove("RUST_LOG");
    match encryption_key {
        Some(k) => c.env("KEYWARD_ENCRYPTION_KEY", k),
        None => c.env_remove("KEYWARD_ENCRYPTION_KEY"),
    };
    c
}

/// Starts `bin` serving, stateless, on `db`.
fn serve(
    bin: &std::path::Path,
    db: &str,
    signing_key: &std::path::Path,
    encryption_key: Option<&str>,
) -> anyhow::Result<Server> {
    let mut cmd = keyward_command(bin, db, signing_key, encryption_key);
    cmd.args(["serve", "--stateless", "--listen", "127.0.0.1:0"]);
    start(cmd)
}

/// Bootstraps `bin` on `db` and starts it serving: the server and its admin key.
fn launch(
    bin: &std::path::Path,
    db: &str,
    signing_key: &std::path::Path,
    encryption_key: Option<&str>,
) -> anyhow::Result<(Server, Admin)> {
    let boot = keyward_command(bin, db, signing_key, encryption_key)
        .args(["bootstrap", "--json"])
        .output()?;
    anyhow::ensure!(
        boot.status.success(),
        "bootstrap of {} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&boot.stderr)
    );
    let printed = serde_json::from_slice::<Value>(&boot.stdout)?;
    let text = |name: &str| printed[name].as_str().unwrap_or_default().to_owned();
    let admin = Admin {
        key: text("api_key"),
        id: text("id"),
    };
    Ok((serve(bin, db, signing_key, encryption_key)?, admin))
}

/// Records of `whoami` calls by `actor_id` itself (not through an OAuth grant, whose calls
/// carry a channel) that succeeded, counted in the database itself.
async fn recorded_calls(database_url: &str, actor_id: &str) -> anyhow::Result<i64> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE actor_id = $1 AND channel IS NULL \
         AND action = 'whoami' AND status = 'success'",
    )
    .bind(actor_id)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn line(name: &str, r: &Round) {
    println!(
        "  {name:<22} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ok {:>8}   failed {:>5}   5xx {:>3}   cpu {:>5.1} µs/call",
        r.rps(),
        r.percentile(0.50).as_secs_f64() * 1e3,
        r.percentile(0.99).as_secs_f64() * 1e3,
        r.ok,
        r.failed,
        r.server_errors,
        r.cpu_per_call_us()
    );
    if r.db_ticks > 0 {
        println!(
            "  {:<22} PostgreSQL's own CPU {:>5.1} µs/call",
            "",
            r.db_per_call_us()
        );
    }
    println!(
        "  {:<22} machine busy {:>3.0}%   load generator {:>5.1} µs/call   every core busy: about {:>6.0} req/s",
        "",
        r.busy() * 100.0,
        r.gen_per_call_us(),
        r.ceiling()
    );
}

/// The median of `v` and its range, for a report line.
fn spread(v: &[f64]) -> String {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    format!("{:.3} ({lo:.3}–{hi:.3})", median(v.to_vec()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    if let Some(url) = &a.target {
        for i in 0..a.rounds {
            let r = round(url, a.key.as_deref(), a.connections, a.seconds).await;
            println!("round {}:", i + 1);
            line("target", &r);
        }
        return Ok(());
    }
    let keyward = a.keyward.clone().unwrap_or_else(|| sibling("keyward"));
    let bare = sibling("bare_server");
    anyhow::ensure!(
        keyward.exists() && bare.exists(),
        "build first: cargo build --release --examples (looked for {} and {})",
        keyward.display(),
        bare.display()
    );
    let dir = tempfile::tempdir()?;
    let db = a
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("load.db").display()));
    // The audit log's signing key (PostgreSQL requires one; older builds ignore it).
    let signing_key = dir.path().join("audit.key");
    let encryption_key = match a.encrypt {
        true => Some(
            keyward::domain::at_rest::AtRestKey::generate()
                .ok_or_else(|| anyhow::anyhow!("no random numbers"))?,
        ),
        false => None,
    };
    anyhow::ensure!(
        a.replicas == 1 || a.database_url.is_some(),
        "--replicas needs --database-url: replicas share one PostgreSQL database"
    );
    let (kw, admin) = launch(&keyward, &db, &signing_key, encryption_key.as_deref())?;
    let key = admin.key.clone();
    // Further replicas of (a) on the same database; the first bootstrapped it.
    let mut replicas = vec![kw];
    for _ in 1..a.replicas {
        replicas.push(serve(
            &keyward,
            &db,
            &signing_key,
            encryption_key.as_deref(),
        )?);
    }
    let kw = &replicas[0];
    // (c): the other build on a database of its own, with the same settings.
    let other = match &a.compare {
        Some(bin) => {
            anyhow::ensure!(
                a.database_url.is_none() && a.target.is_none(),
                "--compare runs both builds on fresh SQLite databases of their own"
            );
            let db = format!("sqlite://{}", dir.path().join("compare.db").display());
            let signing = dir.path().join("compare-audit.key");
            Some(launch(bin, &db, &signing, encryption_key.as_deref())?)
        }
        None => None,
    };
    let mut bare_cmd = Command::new(&bare);
    bare_cmd.arg("127.0.0.1:0");
    let bare = start(bare_cmd)?;
    let pid = kw.child.id();
    let on_postgres = a.database_url.is_some();
    let kw_servers: Vec<(String, u32)> = replicas
        .iter()
        .map(|r| (r.url.clone(), r.child.id()))
        .collect();
    let bare_server = [(bare.url.clone(), bare.child.id())];
    let other_server = other
        .as_ref()
        .map(|(c, c_admin)| ([(c.url.clone(), c.child.id())], c_admin.key.clone()));

    println!(
        "keyward load: {} connections, {} rounds of {} s each, alternating; tool whoami; database {}{}",
        a.connections,
        a.rounds,
        a.seconds,
        match (&a.database_url, a.replicas) {
            (None, _) => "sqlite".to_owned(),
            (Some(_), 1) => "postgres".to_owned(),
            (Some(_), n) => format!("postgres, (a) is {n} replicas"),
        },
        if a.encrypt { ", encrypted at rest" } else { "" }
    );
    let idle_rss = rss_kib(pid);
    // Warm every server (connections, caches, allocators) before measuring: (c) first and
    // (a) last. Warmed the other way round, five runs of one build against a copy of itself
    // measured (c) faster than (a) in 34 of 50 rounds; this way, in 10 of 20 (BENCHMARKS.md).
    if let Some((c, c_admin)) = &other {
        round(&c.url, Some(&c_admin.key), a.connections, 1).await;
    }
    round(&bare.url, None, a.connections, 1).await;
    // Calls answered for the admin key, to count against the trail at the end.
    let mut answered = measured(&kw_servers, Some(&key), a.connections, 1, on_postgres)
        .await
        .ok;

    let token = if a.oauth {
        let t = oauth_token(&kw.url, &key).await?;
        round(&kw.url, Some(&t), a.connections, 1).await;
        Some(t)
    } else {
        None
    };

    let (mut ka, mut kb, mut kt) = (Round::default(), Round::default(), Round::default());
    let mut kc = Round::default();
    // Per round: a/b, c/b, their difference (a/b − c/b), and a/c.
    let (mut ab, mut cb, mut diff, mut ac) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Per round: p99 a/b, and an estimate of a/b if (a) kept every core busy.
    let (mut p99_ab, mut ceiling_ab) = (Vec::new(), Vec::new());
    for i in 0..a.rounds {
        // (c) goes first in odd rounds, second in even ones, so neither build always follows
        // the other.
        let other_round = || async {
            match &other_server {
                Some((server, c_key)) => {
                    Some(measured(server, Some(c_key), a.connections, a.seconds, false).await)
                }
                None => None,
            }
        };
        let mut rc = None;
        if i % 2 == 0 {
            rc = other_round().await;
        }
        let ra = measured(
            &kw_servers,
            Some(&key),
            a.connections,
            a.seconds,
            on_postgres,
        )
        .await;
        answered += ra.ok;
        if i % 2 == 1 {
            rc = other_round().await;
        }
        let rt = match &token {
            Some(t) => Some(
                measured(
                    &kw_servers[..1],
                    Some(t),
                    a.connections,
                    a.seconds,
                    on_postgres,
                )
                .await,
            ),
            None => None,
        };
        let rb = measured(&bare_server, None, a.connections, a.seconds, false).await;
        println!("round {}:", i + 1);
        line("(a) keyward", &ra);
        if let Some(rt) = rt {
            line("(a') keyward, OAuth", &rt);
            println!(
                "    a'/a {:.2}  a'/b {:.2}",
                rt.rps() / ra.rps(),
                rt.rps() / rb.rps()
            );
            kt.merge(rt);
        }
        line("(b) bare rmcp", &rb);
        ab.push(ra.rps() / rb.rps());
        p99_ab.push(ra.percentile(0.99).as_secs_f64() / rb.percentile(0.99).as_secs_f64());
        ceiling_ab.push(ra.ceiling() / rb.rps());
        if let Some(rc) = rc {
            line("(c) the other build", &rc);
            let c_b = rc.rps() / rb.rps();
            println!(
                "    a/b {:.3}  c/b {:.3}  a/b - c/b {:+.3}  a/c {:.3}",
                ab[i],
                c_b,
                ab[i] - c_b,
                ra.rps() / rc.rps()
            );
            ac.push(ra.rps() / rc.rps());
            cb.push(c_b);
            diff.push(ab[i] - c_b);
            kc.merge(rc);
        }
        ka.merge(ra);
        kb.merge(rb);
    }
    let after_rss = rss_kib(pid);
    println!("all rounds:");
    line("(a) keyward", &ka);
    line("(b) bare rmcp", &kb);
    if let Some((bin, _)) = a.compare.as_ref().zip(other.as_ref()) {
        line("(c) the other build", &kc);
        println!(
            "median of {} rounds: a/b {:.3}, c/b {:.3} ({}); median a/b - c/b {:+.3}; median a/c {:.3}",
            a.rounds,
            median(ab.clone()),
            median(cb.clone()),
            bin.display(),
            median(diff.clone()),
            median(ac.clone())
        );
        println!(
            "server CPU per answered call: (a) {:.1} µs, (c) {:.1} µs",
            ka.cpu_per_call_us(),
            kc.cpu_per_call_us()
        );
    }
    if token.is_some() {
        line("(a') keyward, OAuth", &kt);
        println!(
            "ratio a'/a (OAuth token vs API key): {:.2} req/s; a'/b {:.2}",
            kt.rps() / ka.rps(),
            kt.rps() / kb.rps()
        );
    }
    println!(
        "median of {} rounds: a/b {}; p99 a/b {}; a/b if (a) kept every \
         core busy, about {}",
        a.rounds,
        spread(&ab),
        spread(&p99_ab),
        spread(&ceiling_ab)
    );
    let (pa, pb) = (ka.percentile(0.99), kb.percentile(0.99));
    println!(
        "ratio a/b: {:.2} req/s;  p99 a/b: {:.2}  (targets: >= 0.80 and <= 2.00)",
        ka.rps() / kb.rps(),
        pa.as_secs_f64() / pb.as_secs_f64()
    );
    println!(
        "server CPU per answered call: (a) {:.1} µs, (b) {:.1} µs, b/a {:.2}",
        ka.cpu_per_call_us(),
        kb.cpu_per_call_us(),
        kb.cpu_per_call_us() / ka.cpu_per_call_us()
    );
    println!(
        "keyward RSS: {idle_rss} KiB idle (started, no requests yet), {after_rss} KiB after the load"
    );
    // Every answered call must be in the trail (on PostgreSQL, committed before it was
    // answered, so it can be counted at once).
    if let Some(url) = &a.database_url {
        let recorded = recorded_calls(url, &admin.id).await?;
        println!(
            "trail: {answered} calls answered with the admin key over {} replica(s), {recorded} \
             recorded; lost {}",
            replicas.len(),
            answered as i64 - recorded
        );
    }
    Ok(())
}
