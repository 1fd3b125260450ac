//! The CLI commands. Each takes the global flags, builds what it needs from the config, and
//! prints for a person.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_catalog::{Catalog, CatalogError, ImportMode, PullPhase, PullProgress};
use hearth_config::{Config, Sources};
use hearth_llm::{ChatRequest, GenerationOptions, Message, ModelService, StreamEvent};
use serde_json::{Value, json};

use crate::{AppError, client};

/// Flags every command takes.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub config_file: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub listen: Option<String>,
    /// `--database URL`: the `database.url` setting.
    pub database: Option<String>,
}

impl Global {
    pub fn config(&self) -> Result<Config, AppError> {
        let mut flags = Vec::new();
        if let Some(h) = &self.home {
            flags.push(("home".to_owned(), h.display().to_string()));
        }
        if let Some(l) = &self.listen {
            flags.push(("server.listen".to_owned(), l.clone()));
        }
        if let Some(d) = &self.database {
            flags.push(("database.url".to_owned(), d.clone()));
        }
        Ok(Config::load(&Sources::from_process(
            self.config_file.clone(),
            flags,
        ))?)
    }
}

/// Arguments of `hearth run`.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
}

/// What `hearth bench` measures.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode tokens/s of the model alone, against llama.cpp with --peer-python.
    Speed(BenchArgs),
    /// Serving under load through the HTTP API: aggregate decode tokens/s and time to first token
    /// at each concurrency, fairness under one user's flood, peak memory.
    Serve(ServeBenchArgs),
}

/// Arguments of `hearth bench serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeBenchArgs {
    /// Model to measure (default: the configured default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Concurrent streams to measure, comma separated.
    #[arg(long, default_value = "1,2,4,8,16", value_delimiter = ',')]
    pub streams: Vec<usize>,
    /// Tokens each stream generates.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// Requests user A keeps queued in the fairness measurement.
    #[arg(long, default_value_t = 64)]
    pub flood: usize,
    /// Interleaved rounds over all concurrencies; medians are reported (the machine's speed
    /// drifts between rounds on shared hardware; more rounds, a steadier median).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// Arguments of `hearth bench speed`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model to measure (default: the configured default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Thread counts to measure, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens generated for the decode measurement.
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Rounds per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Python of a virtual environment with llama-cpp-python (see bench/setup-peer.sh), to
    /// measure llama.cpp on the same file in the same run.
    #[arg(long, value_name = "PYTHON")]
    pub peer_python: Option<PathBuf>,
    /// The llama.cpp measuring script.
    #[arg(long, default_value = "bench/peer_speed.py")]
    pub peer_script: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Message(format!("cannot start the async runtime: {e}")))
}

/// A progress bar for pulls, drawn on stderr.
fn pull_with_progress(catalog: &Catalog, name: &str) -> Result<(), AppError> {
    if let Ok(entry) = catalog.get(name)
        && entry.status == hearth_catalog::EntryStatus::Ok
    {
        eprintln!(
            "{} is already here ({})",
            entry.name,
            human_bytes(entry.size)
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let report = |p: PullProgress| {
        let msg = match p.phase {
            PullPhase::Waiting => "waiting",
            PullPhase::Downloading => "downloading",
            PullPhase::Extracting => "extracting",
            PullPhase::Verifying => "verifying",
            PullPhase::Done => "done",
        };
        bar.set_message(msg);
        if let Some(t) = p.total {
            bar.set_length(t);
        }
        bar.set_position(p.done);
    };
    let entry = catalog.pull(name, &report);
    bar.finish_and_clear();
    let entry = entry?;
    eprintln!("pulled {} ({})", entry.name, human_bytes(entry.size));
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Whether `name` is not installed (and so worth pulling). Any other problem (an invalid name, an
/// imported file that changed) is returned as it is: a pull would only hide it.
/// The installed model `name`, pulled first when it is not installed. Any other problem (a bad
/// name, a changed file) is reported as it is rather than hidden behind a pull.
fn ensure_present(catalog: &Catalog, name: &str) -> Result<hearth_catalog::ModelEntry, AppError> {
    match catalog.get(name) {
        Ok(entry) => Ok(entry),
        Err(CatalogError::NotFound { .. }) => {
            eprintln!("{name} is not here yet; pulling it first.");
            pull_with_progress(catalog, name)?;
            Ok(catalog.get(name)?)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn serve(g: &Global) -> Result<(), AppError> {
    let config = g.config()?;
    crate::init_tracing(&config.log_level);
    let rt = runtime()?;
    rt.block_on(async move {
        // First: a database that cannot be opened stops the start with its reason, before any
        // download or listening.
        let stores = crate::store::open_store(&config.database).await?;
        let catalog = crate::open_catalog(&config)?;
        if config.models.pull_default_on_serve && catalog.get(&config.models.default).is_err() {
            eprintln!("First start: fetching the default model {}…", config.models.default);
            let c = catalog.clone();
            let name = config.models.default.clone();
            tokio::task::spawn_blocking(move || pull_with_progress(&c, &name))
                .await
                .map_err(|e| AppError::Message(e.to_string()))??;
        }
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| {
                AppError::Message(format!(
                    "cannot listen on {}: {e} (is another Hearth running? choose another address with --listen)",
                    config.server.listen
                ))
            })?;
        let addr = listener.local_addr().map_err(|e| AppError::Message(e.to_string()))?;
        let mode = if addr.ip().is_loopback() {
            "loopback only: reachable from this machine alone"
        } else {
            "listening beyond loopback: reachable from the network; see the auth line below"
        };
        eprintln!("Hearth {} is running at http://{addr}/ ({mode})", crate::VERSION);
        eprintln!("  OpenAI API: http://{addr}/v1   Ollama API: http://{addr}/api");
        eprintln!("  try: curl http://{addr}/v1/chat/completions -H 'content-type: application/json' \\");
        eprintln!("         -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'", config.models.default);
        eprintln!("  accounts: {} database {}", stores.backend, config.database.redacted_url());
        let (accounts, boot) = crate::accounts::start(&config, stores).await?;
        for line in crate::accounts::describe(&config, addr, &boot) {
            eprintln!("  {line}");
        }
        eprintln!("  stop with Ctrl-C");
        crate::run_with_accounts(config, accounts, listener, crate::shutdown_signal()).await
    })
}

pub fn pull(g: &Global, name: &str) -> Result<(), AppError> {
    let config = g.config()?;
    let catalog = crate::open_catalog(&config)?;
    pull_with_progress(&catalog, name)
}

pub fn import(g: &Global, path: &Path, name: &str, copy: bool) -> Result<(), AppError> {
    let catalog = crate::open_catalog(&g.config()?)?;
    let mode = if copy {
        ImportMode::Copy
    } else {
        ImportMode::Adopt
    };
    let entry = catalog.import(path, name, mode)?;
    println!(
        "imported {} ({}, {})",
        entry.name,
        human_bytes(entry.size),
        if copy {
            "copied into the data folder"
        } else {
            "used in place"
        }
    );
    Ok(())
}

fn local_models(config: &Config) -> Result<Arc<hearth_llm::LocalModels>, AppError> {
    Ok(Arc::new(crate::local_models(
        config,
        crate::open_catalog(config)?,
    )))
}

pub fn list(g: &Global) -> Result<(), AppError> {
    let config = g.config()?;
    let models = local_models(&config)?;
    let list = runtime()?.block_on(models.list())?;
    if list.is_empty() {
        println!(
            "No models yet. `hearth pull {}` fetches the default one.",
            config.models.default
        );
        return Ok(());
    }
    println!(
        "{:<32} {:<14} {:>10}  {:<8} {:<8}",
        "NAME", "ID", "SIZE", "PARAMS", "QUANT"
    );
    for m in list {
        println!(
            "{:<32} {:<14} {:>10}  {:<8} {:<8}",
            m.name,
            m.digest.get(..12).unwrap_or("-"),
            human_bytes(m.size_bytes),
            m.parameter_size,
            m.quantization_level
        );
    }
    Ok(())
}

pub fn show(g: &Global, name: &str, verbose: bool, path: bool) -> Result<(), AppError> {
    let config = g.config()?;
    if path {
        println!("{}", crate::open_catalog(&config)?.path_of(name)?.display());
        return Ok(());
    }
    let models = local_models(&config)?;
    let d = runtime()?.block_on(models.show(name))?;
    println!("  Model");
    println!("    name             {}", d.info.name);
    println!("    architecture     {}", d.info.family);
    println!("    parameters       {}", d.info.parameter_size);
    println!("    quantization     {}", d.info.quantization_level);
    println!("    context length   {}", d.context_length);
    println!("    size             {}", human_bytes(d.info.size_bytes));
    if !d.info.digest.is_empty() {
        println!("    digest           sha256:{}", d.info.digest);
    }
    if let Some(l) = &d.license {
        println!("    license          {l}");
    }
    println!(
        "    chat template    {}",
        if d.chat_template.is_some() {
            "from the model"
        } else {
            "none (ChatML fallback)"
        }
    );
    if verbose {
        println!("\n  Metadata");
        for (k, v) in &d.metadata {
            println!("    {k:<40} {v}");
        }
    }
    Ok(())
}

pub fn rm(g: &Global, name: &str) -> Result<(), AppError> {
    let catalog = crate::open_catalog(&g.config()?)?;
    let entry = catalog.remove(name)?;
    println!("deleted {}", entry.name);
    Ok(())
}

fn server_addr(config: &Config) -> SocketAddr {
    let a = config.server.listen;
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}

pub fn ps(g: &Global) -> Result<(), AppError> {
    let config = g.config()?;
    let addr = server_addr(&config);
    let body = client::request(addr, "GET", "/api/ps", None)
        .map_err(|e| {
            AppError::Message(format!(
                "{e}\n(`hearth ps` asks a running server; start one with `hearth serve`)"
            ))
        })?
        .text()?;
    let v: Value = serde_json::from_str(&body).map_err(|e| AppError::Message(e.to_string()))?;
    let models = v["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        println!("No models loaded.");
        return Ok(());
    }
    println!("{:<32} {:>10}  {:<26}", "NAME", "SIZE", "UNTIL");
    for m in models {
        println!(
            "{:<32} {:>10}  {:<26}",
            m["name"].as_str().unwrap_or("?"),
            human_bytes(m["size"].as_u64().unwrap_or(0)),
            m["expires_at"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub fn config(g: &Global) -> Result<(), AppError> {
    let c = g.config()?;
    println!("# layers read: {}", c.sources.join(" → "));
    println!("home = {:?}", c.home.display().to_string());
    println!(
        "[server]\nlisten = \"{}\"\nmax_body_bytes = {}\nmax_choices = {}",
        c.server.listen, c.server.max_body_bytes, c.server.max_choices
    );
    println!(
        "[models]\ndefault = \"{}\"\nkeep_alive = \"{}\"\nmax_loaded = {}\nmemory_budget = \"{}\"\npull_default_on_serve = {}",
        c.models.default,
        c.models
            .keep_alive
            .map_or("-1".to_owned(), |d| format!("{}s", d.as_secs_f64())),
        c.models.max_loaded,
        match c.models.memory_budget {
            hearth_config::MemoryBudget::Auto => "auto".to_owned(),
            hearth_config::MemoryBudget::Unlimited => "0".to_owned(),
            hearth_config::MemoryBudget::Bytes(b) => b.to_string(),
        },
        c.models.pull_default_on_serve
    );
    println!(
        "import_dirs = {:?}\nmax_blob_bytes = {}",
        c.models
            .import_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>(),
        c.models.max_blob_bytes
    );
    println!(
        "[engine]\nthreads = {}\ncontext_length = {}\nprefill_chunk = {}\nmax_queue = {}\nmax_active = {}\nrequest_timeout = \"{}\"",
        c.engine.threads,
        c.engine.context_length,
        c.engine.prefill_chunk,
        c.engine.max_queue,
        c.engine.max_active,
        c.engine
            .request_timeout
            .map_or("0".to_owned(), |d| format!("{}s", d.as_secs_f64()))
    );
    println!(
        "[pull]\npython = \"{}\"\nhub_endpoint = \"{}\"",
        c.pull.python, c.pull.hub_endpoint
    );
    println!("[database]\nurl = {:?}", c.database.redacted_url());
    println!(
        "[auth]\nmode = {:?}  # required on {}: {}\nsignup = {:?}\nsession_idle = {:?}\nsession_lifetime = {:?}\nmfa_required_for_admins = {}\noidc = {}",
        c.auth.mode,
        c.server.listen,
        c.auth.mode.required(c.server.listen),
        c.auth.signup,
        c.auth.session_idle,
        c.auth.session_lifetime,
        c.auth.mfa_required_for_admins,
        c.auth.oidc.as_ref().map_or("off", |o| o.issuer.as_str()),
    );
    println!("[log]\nlevel = \"{}\"", c.log_level);
    Ok(())
}

/// Where `hearth run` sends its requests.
enum Backend {
    Server(SocketAddr),
    Local(Arc<hearth_llm::LocalModels>, tokio::runtime::Runtime),
}

impl Backend {
    /// Send a chat; print deltas as they come; return the whole answer.
    fn chat(
        &self,
        model: &str,
        messages: &[Message],
        options: &GenerationOptions,
    ) -> Result<String, AppError> {
        let mut answer = String::new();
        let mut out = std::io::stdout();
        match self {
            Backend::Server(addr) => {
                let mut opts = serde_json::Map::new();
                if let Some(t) = options.temperature {
                    opts.insert("temperature".into(), json!(t));
                }
                if let Some(m) = options.max_tokens {
                    opts.insert("num_predict".into(), json!(m));
                }
                if let Some(s) = options.seed {
                    opts.insert("seed".into(), json!(s));
                }
                let msgs: Vec<Value> = messages
                    .iter()
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect();
                let body =
                    json!({"model": model, "messages": msgs, "stream": true, "options": opts})
                        .to_string();
                let mut resp = client::request(*addr, "POST", "/api/chat", Some(&body))?;
                resp.for_each_line(|line| {
                    let v: Value = serde_json::from_str(line)
                        .map_err(|e| client::ClientError::Protocol(e.to_string()))?;
                    if let Some(err) = v["error"].as_str() {
                        return Err(client::ClientError::Protocol(err.to_owned()));
                    }
                    if let Some(t) = v["message"]["content"].as_str() {
                        answer.push_str(t);
                        let _ = write!(out, "{t}");
                        let _ = out.flush();
                    }
                    Ok(())
                })?;
            }
            Backend::Local(models, rt) => {
                rt.block_on(async {
                    let req = ChatRequest {
                        model: model.to_owned(),
                        messages: messages.to_vec(),
                        options: options.clone(),
                        ..ChatRequest::default()
                    };
                    let mut stream = models.chat(req).await?;
                    while let Some(ev) = stream.recv().await {
                        match ev {
                            StreamEvent::Delta(t) => {
                                answer.push_str(&t);
                                let _ = write!(out, "{t}");
                                let _ = out.flush();
                            }
                            StreamEvent::Logprobs(_) | StreamEvent::ToolCalls(_) => {}
                            StreamEvent::Done(_) => break,
                            StreamEvent::Error(e) => return Err(AppError::from(e)),
                        }
                    }
                    Ok::<(), AppError>(())
                })?;
            }
        }
        println!();
        Ok(answer)
    }
}

pub fn run(g: &Global, args: RunArgs) -> Result<(), AppError> {
    let config = g.config()?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| config.models.default.clone());
    let addr = server_addr(&config);
    let backend = if client::is_up(addr) {
        Backend::Server(addr)
    } else {
        crate::init_tracing("warn");
        let catalog = crate::open_catalog(&config)?;
        ensure_present(&catalog, &model)?;
        Backend::Local(Arc::new(crate::local_models(&config, catalog)), runtime()?)
    };
    let options = GenerationOptions {
        temperature: args.temperature,
        max_tokens: args.max_tokens,
        seed: args.seed,
        ..GenerationOptions::default()
    };
    if let Some(prompt) = args.prompt {
        let prompt = if prompt == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            // `echo QUESTION | hearth run MODEL -` ends in a newline that is not part of the
            // question (left in, it changes the answer); an empty prompt is a mistake.
            s.truncate(s.trim_end().len());
            if s.trim().is_empty() {
                return Err(AppError::Message(
                    "no prompt on stdin (`-` reads the prompt from stdin; pipe some text in)"
                        .into(),
                ));
            }
            s
        } else {
            prompt
        };
        let msgs = [Message::text("user", prompt)];
        backend.chat(&model, &msgs, &options)?;
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "Chatting with {model}. /clear forgets the conversation, /bye (or Ctrl-D) leaves."
        );
    }
    let mut history: Vec<Message> = Vec::new();
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!(">>> ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/bye" | "/exit" | "/quit" => break,
            "/clear" => {
                history.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(Message::text("user", line.to_owned()));
        let answer = backend.chat(&model, &history, &options)?;
        history.push(Message::text("assistant", answer));
    }
    Ok(())
}

pub fn bench(g: &Global, what: BenchCommand) -> Result<(), AppError> {
    match what {
        BenchCommand::Speed(args) => bench_speed(g, args),
        BenchCommand::Serve(args) => bench_serve(g, args),
    }
}

fn bench_serve(g: &Global, args: ServeBenchArgs) -> Result<(), AppError> {
    let config = g.config()?;
    let catalog = crate::open_catalog(&config)?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| config.models.default.clone());
    let entry = ensure_present(&catalog, &model)?;
    // End-of-generation tokens are suppressed so every stream generates exactly `tokens`.
    let unreadable = |e: &dyn std::fmt::Display| {
        AppError::Message(format!("cannot read {}: {e}", entry.path.display()))
    };
    let file = hearth_gguf::GgufFile::open(&entry.path).map_err(|e| unreadable(&e))?;
    let suppress = hearth_tokenizer::Tokenizer::from_gguf(&file)
        .map_err(|e| unreadable(&e))?
        .eog_ids()
        .to_vec();
    drop(file);
    eprintln!(
        "serving {model} on an in-process server; {} tokens per stream (end-of-generation \
         suppressed), engine.max_active = {}, {} interleaved rounds",
        args.tokens, config.engine.max_active, args.rounds
    );
    let server = crate::Background::start(config)?;
    let result = crate::bench::serve_bench(
        server.addr,
        &crate::bench::ServeBench {
            model: &model,
            streams: &args.streams,
            tokens: args.tokens,
            flood: args.flood,
            rounds: args.rounds,
            suppress,
        },
    );
    server.shutdown()?;
    result
}

fn bench_speed(g: &Global, args: BenchArgs) -> Result<(), AppError> {
    use crate::bench::{Row, Subject, median, peer_speed, print_table};
    let config = g.config()?;
    let catalog = crate::open_catalog(&config)?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| config.models.default.clone());
    let entry = ensure_present(&catalog, &model)?;
    eprintln!(
        "model {} ({}); {} prompt tokens, {} generated, median of {} interleaved rounds",
        entry.name,
        entry.path.display(),
        args.prompt_tokens,
        args.gen_tokens,
        args.rounds
    );
    let mut rows = Vec::new();
    for &threads in &args.threads {
        let subject = Subject::load(&entry.path, threads)?;
        subject.measure(16, 4)?; // warm-up
        let (mut hp, mut hd, mut pp, mut pd) = (vec![], vec![], vec![], vec![]);
        for round in 0..args.rounds {
            eprint!("\rthreads {threads}: round {}/{}", round + 1, args.rounds);
            let (p, d) = subject.measure(args.prompt_tokens, args.gen_tokens)?;
            hp.push(p);
            hd.push(d);
            if let Some(py) = &args.peer_python {
                let (p, d) = peer_speed(
                    py,
                    &args.peer_script,
                    &entry.path,
                    threads,
                    args.prompt_tokens,
                    args.gen_tokens,
                )?;
                pp.push(p);
                pd.push(d);
            }
        }
        eprintln!();
        rows.push(Row {
            threads,
            hearth: (median(hp), median(hd)),
            peer: args.peer_python.as_ref().map(|_| (median(pp), median(pd))),
        });
    }
    print_table(&rows);
    Ok(())
}

/// `hearth user …`, `hearth key …`, `hearth audit …`: local admin access to the database.
pub fn user(g: &Global, cmd: crate::accounts::UserCommand) -> Result<(), AppError> {
    let config = g.config()?;
    runtime()?.block_on(crate::accounts::user(&config, cmd))
}

pub fn key(g: &Global, cmd: crate::accounts::KeyCommand) -> Result<(), AppError> {
    let config = g.config()?;
    runtime()?.block_on(crate::accounts::key(&config, cmd))
}

pub fn audit(g: &Global, cmd: crate::accounts::AuditCommand) -> Result<(), AppError> {
    let config = g.config()?;
    runtime()?.block_on(crate::accounts::audit(&config, cmd))
}

/// `hearth version`.
pub fn version() -> Result<(), AppError> {
    println!("hearth {}", crate::VERSION);
    Ok(())
}
