//! The `aicc` command: `serve` runs the platform; `admin` manages accounts;
//! `train`/`eval intent` build and score the intent classifier; `generate`
//! asks the generator once.
//! JSON goes to stdout, progress and logs to stderr.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::sync::Arc;

use aicc_core::settings::Settings;
use anyhow::Context;
use clap::{Parser, Subcommand};

mod bench;
mod bootstrap;
mod dialog_cli;
mod generate_cli;
mod intent_cli;
mod kb_cli;
mod models;

#[derive(Parser)]
#[command(name = "aicc", version, about = "AICC: an AI contact-center platform")]
struct Cli {
    /// Config file (default: ./aicc.toml when it exists).
    #[arg(long, global = true, env = "AICC_CONFIG")]
    config: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform (HTTP API on AICC_BIND, default 127.0.0.1:8080).
    Serve,
    /// Manage accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Model files: fetch them into the model cache, or list their state.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Measure; prints one JSON object on stdout.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Train a model; writes its artifact and prints a JSON summary.
    Train {
        #[command(subcommand)]
        command: TrainCommand,
    },
    /// Train on one file, score on another; prints one JSON object.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
    /// One answer from the configured generator, streamed to stdout.
    Generate(generate_cli::GenerateArgs),
    /// The knowledge base.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Stores a FAQ file as a new draft version and indexes it.
    Import(kb_cli::ImportArgs),
}

#[derive(Subcommand)]
enum TrainCommand {
    /// The intent classifier, from a `text,intent[,language]` CSV.
    Intent(intent_cli::TrainArgs),
    /// The demo tenant's intent model into the model cache, as `aicc serve`
    /// trains it on first start (to bake it into an image, or warm CI).
    DemoIntents,
    /// A tenant's retrieval adapter from labelled messages (docs/knowledge.md).
    KbAdapter(kb_cli::TrainAdapterArgs),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Intent accuracy, macro-F1 and (with `oos` test rows) in-scope accuracy and oos recall.
    Intent(intent_cli::EvalArgs),
    Retrieval(kb_cli::EvalArgs),
    /// The scripted demo conversations (tests/scenarios) through a real
    /// server and the real models; pass rate per category.
    Scenarios(dialog_cli::ScenarioArgs),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download and verify models (default: every model marked pull_by_default).
    Pull { names: Vec<String> },
    /// Every model of the manifest and the state of its files, as JSON.
    List,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// WebSocket connections held, messages/s and delivery latency (docs/benchmarks.md).
    Ws(bench::WsArgs),
    /// Embedder latency and throughput (docs/benchmarks.md).
    Embed(bench::EmbedArgs),
    /// Classifying one message with the demo intent model, embedding included
    /// (trains it into the cache first if missing; docs/benchmarks.md).
    Intent(bench::EmbedArgs),
    Kb(kb_cli::BenchArgs),
    /// Prefill and decode speed of the local generator (docs/benchmarks.md;
    /// scripts/bench-llm-peer runs llama.cpp beside it).
    Generate(generate_cli::BenchArgs),
    /// Bot turns over the WebSocket: fast-path latency and RAG time to first token.
    Dialog(dialog_cli::BenchArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user (and the tenant, if it does not exist). The password is
    /// read from stdin (one line); with empty stdin one is generated and printed once.
    CreateUser {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "agent"])]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
}

fn load_settings(config: Option<&str>) -> anyhow::Result<Settings> {
    let path = config.unwrap_or("aicc.toml");
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.is_none() => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read config file {path}")),
    };
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| Settings::ENV_VARS.contains(&k.as_str())).collect();
    Ok(Settings::load(text.as_deref(), env.iter().map(|(k, v)| (k.as_str(), v.as_str())))?)
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = load_settings(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            init_tracing(&settings.log);
            serve(settings).await
        }
        Command::Models { command } => {
            init_tracing("warn");
            models(command, &settings)
        }
        Command::Bench { command: BenchCommand::Intent(args) } => {
            init_tracing("warn");
            let demo = models::warm_demo_cache(&settings).await?;
            println!("{}", bench::intent(args, &demo.model, &demo.head)?);
            Ok(())
        }
        Command::Bench { command: BenchCommand::Kb(args) } => {
            init_tracing("warn");
            println!("{}", kb_cli::bench(args, &settings).await?);
            Ok(())
        }
        Command::Bench { command: BenchCommand::Generate(args) } => {
            init_tracing("warn");
            println!("{}", generate_cli::bench(args, &settings).await?);
            Ok(())
        }
        Command::Generate(args) => {
            init_tracing("warn");
            generate_cli::generate(args, &settings).await
        }
        Command::Bench { command: BenchCommand::Embed(args) } => {
            init_tracing("warn");
            println!("{}", bench::embed(args, &settings.model_dir)?);
            Ok(())
        }
        Command::Train { command: TrainCommand::Intent(args) } => {
            init_tracing("warn");
            println!("{}", intent_cli::train(args, &settings.model_dir)?);
            Ok(())
        }
        Command::Train { command: TrainCommand::DemoIntents } => {
            init_tracing("info");
            let demo = models::warm_demo_cache(&settings).await?;
            let head = &demo.head;
            println!("{}", serde_json::json!({ "dir": demo.dir, "trained": demo.trained, "labels": head.labels().len(), "dev": head.meta.dev }));
            Ok(())
        }
        Command::Eval { command: EvalCommand::Intent(args) } => {
            init_tracing("warn");
            println!("{}", intent_cli::eval(args, &settings.model_dir)?);
            Ok(())
        }
        Command::Train { command: TrainCommand::KbAdapter(args) } => {
            init_tracing("warn");
            println!("{}", kb_cli::train_adapter(args, &settings).await?);
            Ok(())
        }
        Command::Eval { command: EvalCommand::Scenarios(args) } => {
            init_tracing(&std::env::var("AICC_LOG").unwrap_or_else(|_| "warn".into()));
            println!("{}", dialog_cli::scenarios(args, settings).await?);
            Ok(())
        }
        Command::Bench { command: BenchCommand::Dialog(args) } => {
            init_tracing(&std::env::var("AICC_LOG").unwrap_or_else(|_| "warn".into()));
            println!("{}", dialog_cli::bench(args, settings).await?);
            Ok(())
        }
        Command::Eval { command: EvalCommand::Retrieval(args) } => {
            init_tracing("warn");
            println!("{}", kb_cli::eval(args, &settings).await?);
            Ok(())
        }
        Command::Kb { command: KbCommand::Import(args) } => {
            init_tracing("warn");
            println!("{}", kb_cli::import(args, &settings).await?);
            Ok(())
        }
        Command::Bench { command: BenchCommand::Ws(args) } => {
            init_tracing("warn");
            println!("{}", bench::ws(args).await?);
            Ok(())
        }
        Command::Admin { command: AdminCommand::CreateUser { tenant, email, role, name } } => {
            init_tracing(&format!("warn,{}", settings.log.split(',').skip(1).collect::<Vec<_>>().join(",")));
            let store = aicc_store::open(settings.database_url.as_deref(), &settings.data_dir).await?;
            let password = read_password_line()?;
            let role = aicc_core::Role::parse(&role).context("role must be admin or agent")?;
            let created = bootstrap::create_user(&store, &tenant, &email, role, name.as_deref(), password).await?;
            let mut out = serde_json::json!({ "tenant": tenant, "email": created.email, "role": role, "user_id": created.user_id });
            if let Some(pw) = created.generated_password {
                // Printed this once only: just the hash is stored.
                out["generated_password"] = pw.into();
            }
            println!("{out}");
            Ok(())
        }
    }
}

fn models(command: ModelsCommand, settings: &Settings) -> anyhow::Result<()> {
    let manifest = aicc_models::Manifest::builtin()?;
    let fetcher = aicc_models::Fetcher::new(&settings.model_dir);
    match command {
        ModelsCommand::Pull { names } => {
            let chosen: Vec<&aicc_models::ModelSpec> = if names.is_empty() {
                manifest.models.iter().filter(|m| m.pull_by_default).collect()
            } else {
                names.iter().map(|n| manifest.get(n)).collect::<Result<_, _>>()?
            };
            let mut pulled = vec![];
            for model in chosen {
                eprintln!("{}: {}", model.name, model.description);
                let fetched = fetcher.pull(model).with_context(|| format!("pulling {}", model.name))?;
                if fetched == 0 {
                    eprintln!("  already in {}", settings.model_dir.join(&model.name).display());
                }
                pulled.push(serde_json::json!({ "name": model.name, "fetched_files": fetched, "state": "ready" }));
            }
            println!("{}", serde_json::json!({ "model_dir": settings.model_dir, "models": pulled }));
        }
        ModelsCommand::List => {
            let list: Vec<_> = manifest
                .models
                .iter()
                .map(|m| {
                    let files: Vec<_> = m
                        .files
                        .iter()
                        .map(|f| serde_json::json!({ "path": f.path, "size": f.size, "state": fetcher.state(m, f) }))
                        .collect();
                    let ready = m.files.iter().all(|f| fetcher.state(m, f) == aicc_models::FileState::Ready);
                    serde_json::json!({
                        "name": m.name, "kind": m.kind, "licence": m.licence,
                        "state": if ready { "ready" } else { "missing" }, "files": files,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "model_dir": settings.model_dir, "models": list }));
        }
    }
    Ok(())
}

/// One line from stdin; `None` when stdin is empty or a terminal with nothing typed.
fn read_password_line() -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (empty: generate one): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("cannot read the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    Ok((!pw.is_empty()).then_some(pw))
}

/// A platform started in this process: what `serve` runs, and what the
/// scenario suite and the dialog benchmark drive.
pub(crate) struct Started {
    pub app: aicc_api::Application,
    pub store: Arc<dyn aicc_core::Store>,
    pub demo: Option<bootstrap::Demo>,
    pub demo_id: Option<uuid::Uuid>,
    pub url: String,
    backend: &'static str,
    bus_backend: &'static str,
}

pub(crate) async fn start(settings: &Settings) -> anyhow::Result<Started> {
    tracing::info!(config = %settings.redacted(), "effective configuration");
    // Every WebSocket is a file descriptor.
    let nofile = bench::raise_nofile_limit();
    tracing::info!(nofile, "open-file limit");
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let store = aicc_store::open(settings.database_url.as_deref(), &settings.data_dir).await?;
    let demo = if settings.demo { Some(bootstrap::demo_tenant(&store).await?) } else { None };
    let backend = store.backend();
    let bus = aicc_bus::open(settings.redis_url.as_deref()).await?;
    let bus_backend = bus.backend();
    let demo_id = match &demo {
        Some(d) => store.tenant_by_slug(&d.tenant).await?.map(|t| t.id),
        None => None,
    };
    let kb = aicc_search::KnowledgeBase::new(store.clone(), Some(bus.clone()), Some(settings.data_dir.join("kb")));
    if demo.is_some() {
        bootstrap::demo_knowledge(&store, &kb).await?;
    }
    let app = aicc_api::Application::build(settings.clone(), store.clone(), bus, Arc::new(kb.clone())).await?;
    models::spawn(settings, store.clone(), app.models(), demo_id, kb);
    let host = settings.bind.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1");
    let url = format!("http://{host}:{}", app.port());
    Ok(Started { app, store, demo, demo_id, url, backend, bus_backend })
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let started = start(&settings).await?;
    banner(&started.url, started.backend, started.bus_backend, &settings.data_dir, started.demo.as_ref());
    tokio::select! {
        r = started.app.run_until_stopped() => r.context("server failed")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}

fn banner(url: &str, backend: &str, bus: &str, data_dir: &Path, demo: Option<&bootstrap::Demo>) {
    eprintln!();
    eprintln!("  AICC is running at {url}");
    eprintln!("  chat with the demo bot: {url}/   agents: {url}/agent/   admin: {url}/admin/");
    let file = if backend == "sqlite" { format!(" ({}/aicc.db)", data_dir.display()) } else { String::new() };
    eprintln!("  store: {backend}{file}   bus: {bus}");
    if let Some(d) = demo {
        eprintln!("  demo tenant: {}  admin: {}  password: {}", d.tenant, d.email, d.password);
    }
    eprintln!("  health: {url}/healthz   API: {url}/v1/openapi.json");
    eprintln!();
    // A machine-readable line for scripts and tests that start the binary.
    println!("{}", serde_json::json!({ "listening": url }));
}
