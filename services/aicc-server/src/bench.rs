//! `aicc bench ws`: holds N customer WebSocket connections and M agents over
//! loopback, drives a steady message rate from customers to agents, and
//! reports held connections, messages/s, customer→agent delivery latency and
//! the server's memory. Starts its own `aicc serve` (on DATABASE_URL /
//! REDIS_URL if set, else SQLite and the in-process bus) unless `--url` names
//! a running server.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

#[derive(clap::Args, Debug, Clone)]
pub struct WsArgs {
    /// Customer connections to hold open.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Agent connections; the active conversations are shared among them.
    #[arg(long, default_value_t = 10)]
    pub agents: usize,
    /// How many of the customers send messages.
    #[arg(long, default_value_t = 100)]
    pub active: usize,
    /// Messages per second, all active customers together.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// How long to send, after every connection is up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// A running server (otherwise one is started); needs --password.
    #[arg(long)]
    pub url: Option<String>,
    /// The demo admin's password on --url.
    #[arg(long)]
    pub password: Option<String>,
}

struct Target {
    url: String,
    password: String,
    child: Option<tokio::process::Child>,
}

/// Lifts the open-file limit to its hard maximum (each connection is a file).
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

async fn start_server() -> anyhow::Result<Target> {
    let dir = std::env::temp_dir().join(format!("aicc-bench-{}", Uuid::new_v4().simple()));
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("AICC_BIND", "127.0.0.1:0")
        .env("AICC_DATA_DIR", &dir)
        .env("AICC_DEMO", "1")
        // The real-time layer alone: its memory and latency figures exclude
        // the models, and no bot answers (nor hands over) the bench's messages.
        .env("AICC_EMBEDDER", "none")
        .env("AICC_GENERATOR", "none")
        .env("AICC_BOT", "0")
        .env("AICC_LOG", "warn")
        .env("AICC_WS_FRAMES_PER_10S", "1000000")
        .env("AICC_WIDGET_CONVERSATIONS_PER_MINUTE", "100000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start aicc serve")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .context("the server did not start within 60 s")??
        .context("the server exited")?;
    let url = serde_json::from_str::<Value>(&line)?["listening"].as_str().context("no listening line")?.to_string();
    let mut password = None;
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(10), stderr.next_line()).await {
        if let Some(p) = line.split("password: ").nth(1) {
            password = Some(p.trim().to_string());
            break;
        }
    }
    // Keep draining the server's stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    Ok(Target { url, password: password.context("no demo password in the banner")?, child: Some(child) })
}

/// A `kB` field of `/proc/PID/status` (Linux), e.g. `VmRSS:` or `VmHWM:`.
pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_mb(pid: u32, field: &str) -> Option<f64> {
    Some(status_kb(pid, field)? as f64 / 1024.0)
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> anyhow::Result<Ws> {
    let ws_url = format!("{}/v1/ws?token={token}", url.replacen("http://", "ws://", 1));
    Ok(tokio_tungstenite::connect_async(ws_url).await?.0)
}

pub async fn ws(args: WsArgs) -> anyhow::Result<Value> {
    if args.active > args.customers || args.agents == 0 || args.rate == 0 {
        bail!("need --agents ≥ 1, --rate ≥ 1 and --active ≤ --customers");
    }
    let nofile = raise_nofile_limit();
    let target = match (&args.url, &args.password) {
        (Some(url), Some(pw)) => Target { url: url.clone(), password: pw.clone(), child: None },
        (Some(_), None) => bail!("--url needs --password (the demo admin's)"),
        _ => start_server().await?,
    };
    let pid = target.child.as_ref().and_then(|c| c.id());
    let http = reqwest::Client::new();
    let url = target.url.clone();
    eprintln!("bench: server {url}; open-file limit {nofile}; creating {} conversations", args.customers);

    let created: Vec<anyhow::Result<(Uuid, String)>> = futures_util::stream::iter(0..args.customers)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let v: Value = http.post(format!("{url}/v1/widget/demo/conversations")).json(&json!({})).send().await?.json().await?;
                let id = v["conversation_id"].as_str().context("no conversation_id")?.parse()?;
                Ok((id, v["token"].as_str().context("no token")?.to_string()))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let convs: Vec<(Uuid, String)> = created.into_iter().collect::<anyhow::Result<_>>()?;
    let login: Value = http
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": "demo", "email": "admin@demo.local", "password": target.password }))
        .send()
        .await?
        .json()
        .await?;
    let agent_token = login["access_token"].as_str().context("login failed")?.to_string();

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let held = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    // Agents keep reading after the senders stop, until every message arrived.
    let stop_agents = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicUsize::new(0));

    // Agents subscribe to the active conversations, shared round-robin.
    let mut agent_tasks = vec![];
    for a in 0..args.agents {
        let mut ws = connect(&url, &agent_token).await?;
        for (i, (id, _)) in convs.iter().take(args.active).enumerate() {
            if i % args.agents == a {
                ws.send(Message::Text(json!({ "type": "subscribe", "conversation_id": id }).to_string().into())).await?;
            }
        }
        let (stop, latencies, delivered) = (stop_agents.clone(), latencies.clone(), delivered.clone());
        agent_tasks.push(tokio::spawn(async move {
            let mut mine = vec![];
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await else { continue };
                let Message::Text(text) = msg else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                if frame["type"] == "message" {
                    if let Some(sent) = frame["message"]["text"].as_str().and_then(|t| t.strip_prefix("bench ")) {
                        if let Ok(sent) = sent.parse::<u64>() {
                            mine.push((start.elapsed().as_micros() as u64).saturating_sub(sent));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            latencies.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
        }));
    }

    eprintln!("bench: connecting {} customers", convs.len());
    let per_conn = Duration::from_secs_f64(args.active as f64 / args.rate as f64);
    let sent = Arc::new(AtomicUsize::new(0));
    // Watches, not Notify: a task that starts waiting late still sees the signal.
    let (go_tx, go) = tokio::sync::watch::channel(false);
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let synced = Arc::new(AtomicUsize::new(0));
    let mut customer_tasks = vec![];
    let connected: Vec<anyhow::Result<Ws>> = futures_util::stream::iter(convs.iter())
        .map(|(_, token)| connect(&url, token))
        .buffered(128)
        .collect()
        .await;
    for (i, ws) in connected.into_iter().enumerate() {
        let mut ws = ws.context("a customer could not connect")?;
        let conv = convs[i].0;
        ws.send(Message::Text(json!({ "type": "hello" }).to_string().into())).await?;
        held.fetch_add(1, Ordering::Relaxed);
        let (stop, held, sent, mut go, mut done) = (stop.clone(), held.clone(), sent.clone(), go.clone(), done.clone());
        let synced = synced.clone();
        let active = i < args.active;
        customer_tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let reader = tokio::spawn(async move {
                // The first `status` frame ends the hello's replay: the connection is synced.
                while let Some(Ok(msg)) = rx.next().await {
                    if let Message::Text(t) = msg {
                        if t.contains(r#""type":"status""#) {
                            synced.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                while let Some(Ok(_)) = rx.next().await {}
            });
            if active {
                let _ = go.wait_for(|started| *started).await;
                // Spread the senders over the interval so the rate is steady.
                tokio::time::sleep(per_conn.mul_f64((i as f64 * 0.618) % 1.0)).await;
                let mut tick = tokio::time::interval(per_conn);
                loop {
                    tick.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let text = format!("bench {}", start.elapsed().as_micros());
                    let frame = json!({ "type": "message", "conversation_id": conv, "client_msg_id": Uuid::new_v4(), "text": text });
                    if tx.send(Message::Text(frame.to_string().into())).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                // Idle customers sleep until the end (no polling: 10,000 of them would cost CPU).
                let _ = done.wait_for(|finished| *finished).await;
            }
            if reader.is_finished() {
                held.fetch_sub(1, Ordering::Relaxed);
            }
            reader.abort();
        }));
    }
    // Load starts once the server has answered every hello (not while it still replays).
    let wait_start = Instant::now();
    while synced.load(Ordering::Relaxed) < convs.len() && wait_start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = pid.and_then(|p| rss_mb(p, "VmRSS:"));
    eprintln!(
        "bench: {} customers connected, {} synced; sending {} msg/s for {} s",
        held.load(Ordering::Relaxed),
        synced.load(Ordering::Relaxed),
        args.rate,
        args.seconds
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load_start = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let sending = load_start.elapsed().as_secs_f64();
    let rss_load = pid.and_then(|p| rss_mb(p, "VmRSS:"));
    let held_now = held.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = done_tx.send(true);
    for t in customer_tasks {
        let _ = t.await;
    }
    let sent_total = sent.load(Ordering::Relaxed);
    // Let the last messages arrive (at most 5 s more).
    let drain = Instant::now();
    while delivered.load(Ordering::Relaxed) < sent_total && drain.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_agents.store(true, Ordering::Relaxed);
    for t in agent_tasks {
        let _ = t.await;
    }
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort_unstable();
    let peak = pid.and_then(|p| rss_mb(p, "VmHWM:"));
    Ok(json!({
        "customers": args.customers,
        "agents": args.agents,
        "active": args.active,
        "held_connections": held_now,
        "messages_sent": sent_total,
        "messages_delivered": lat.len(),
        "messages_per_s": (lat.len() as f64 / sending * 10.0).round() / 10.0,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
        "server_rss_mb_connected": rss_idle.map(|v| v.round()),
        "server_rss_mb_under_load": rss_load.map(|v| v.round()),
        "server_peak_rss_mb": peak.map(|v| v.round()),
        "store": if std::env::var("DATABASE_URL").is_ok() { "postgres" } else { "sqlite" },
        "bus": if std::env::var("REDIS_URL").is_ok() { "redis" } else { "in-process" },
    }))
}

#[derive(clap::Args, Debug, Clone)]
pub struct EmbedArgs {
    /// Single queries to time.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Passages embedded back to back for the throughput figure.
    #[arg(long, default_value_t = 300)]
    pub batch: usize,
}

/// `aicc bench embed`: single-query latency and passage throughput of the
/// default embedder (multilingual-e5-small), on the demo FAQ's texts.
pub fn embed(args: EmbedArgs, model_dir: &std::path::Path) -> anyhow::Result<Value> {
    let path = model_dir.join("multilingual-e5-small/e5-small-q4.bin");
    let model = aicc_models::E5Model::load(&path).with_context(|| "run `aicc models pull multilingual-e5-small` first")?;
    let queries = [
        "카드가 아직 안 왔어요",
        "How do I reset my PIN?",
        "해외에서 카드 결제가 안 돼요",
        "Why was I charged a fee for the transfer?",
        "계좌 이체 한도를 늘리고 싶어요",
    ];
    for q in queries {
        model.embed(q, aicc_models::EmbedKind::Query)?; // warm-up
    }
    let mut times = Vec::with_capacity(args.queries);
    for i in 0..args.queries {
        let t = Instant::now();
        model.embed(queries[i % queries.len()], aicc_models::EmbedKind::Query)?;
        times.push(t.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    let passage = "Cards are sent by registered mail and standard delivery takes 5–7 business days; you can follow yours in the app.";
    // Batches of 32 passages, one padded forward pass each.
    let passages = vec![passage; args.batch];
    let t = Instant::now();
    for group in passages.chunks(32) {
        model.embed_batch(group, aicc_models::EmbedKind::Passage)?;
    }
    let per_s = args.batch as f64 / t.elapsed().as_secs_f64();
    Ok(json!({
        "model": "multilingual-e5-small",
        "threads": aicc_models::kernels::threads(),
        "p50_ms": percentile(&times, 0.50),
        "p99_ms": percentile(&times, 0.99),
        "batch_sentences_per_s": (per_s * 10.0).round() / 10.0,
    }))
}

/// `aicc bench intent`: one customer message → intent, as the dialog will
/// ask it (embed with the query prefix, then the head), one at a time.
pub fn intent(args: EmbedArgs, model: &aicc_models::E5Model, head: &aicc_models::intent::IntentModel) -> anyhow::Result<Value> {
    let messages = [
        "카드가 아직 안 왔어요",
        "I still haven't received my new card",
        "해외에서 카드 결제가 안 돼요",
        "Why was I charged a fee for the transfer?",
        "상담원 연결해 주세요",
        "What's the weather like in Busan tomorrow?",
    ];
    let mut times = Vec::with_capacity(args.queries);
    for i in 0..args.queries + messages.len() {
        let t = Instant::now();
        let text = messages[i % messages.len()];
        let v = model.embed(text, aicc_models::EmbedKind::Query)?;
        let p = head.predict(&[text], &[v]);
        anyhow::ensure!(p.len() == 1, "one prediction per message");
        if i >= messages.len() {
            times.push(t.elapsed().as_micros() as u64); // the first round warms up
        }
    }
    times.sort_unstable();
    Ok(json!({
        "model": "multilingual-e5-small + demo intent head",
        "threads": aicc_models::kernels::threads(),
        "p50_ms": percentile(&times, 0.50),
        "p99_ms": percentile(&times, 0.99),
    }))
}
