//! The `hearth` command: parse the command line, start logging, hand over to `hearth_app`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hearth_app::commands::{self, Global};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Private AI on your own machine: local models behind OpenAI- and Ollama-compatible APIs",
    after_help = "Start with `hearth serve`, then open the printed URL or point any OpenAI or Ollama client at it.\n\
                  Settings: `hearth config` prints the effective configuration and the layers it was read from."
)]
struct Cli {
    /// Read this config file too (after the system and user files).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder (models, database); default $HEARTH_HOME or ~/.local/share/hearth.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Server address for `serve`, and where `run` and `ps` look for a server.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Accounts database: sqlite:///path/hearth.db or postgres://user:password@host/db.
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (OpenAI and Ollama compatible); pulls the default model on first start.
    Serve,
    /// Chat with a model: interactive when no prompt is given, else answer PROMPT and exit.
    Run {
        /// Model name (default: the configured default model).
        model: Option<String>,
        /// One prompt to answer; reads stdin when it is `-`.
        prompt: Option<String>,
        /// Sampling temperature (0 = greedy, deterministic).
        #[arg(long)]
        temperature: Option<f32>,
        /// Stop after this many tokens.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Same seed, same answer.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Download a model into the data folder.
    Pull { model: String },
    /// Add a GGUF file you already have as a model.
    Import {
        path: PathBuf,
        /// Name to use, e.g. mymodel:q4.
        #[arg(long)]
        name: String,
        /// Copy the file into the data folder instead of using it where it is.
        #[arg(long)]
        copy: bool,
    },
    /// List installed models.
    List,
    /// Show a model's details and metadata.
    Show {
        model: String,
        /// Print every metadata key.
        #[arg(long)]
        verbose: bool,
        /// Print only the path of the model file.
        #[arg(long, conflicts_with = "verbose")]
        path: bool,
    },
    /// Remove a model.
    Rm { model: String },
    /// Show the models the running server has loaded.
    Ps,
    /// Print the effective configuration and the layers it was read from.
    Config,
    /// Measure speed (`bench speed`, against llama.cpp) and serving under load (`bench serve`).
    #[command(subcommand)]
    Bench(commands::BenchCommand),
    /// Manage users (local admin access to the database).
    #[command(subcommand)]
    User(hearth_app::accounts::UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(hearth_app::accounts::KeyCommand),
    /// Read and check the audit log.
    #[command(subcommand)]
    Audit(hearth_app::accounts::AuditCommand),
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let global = Global {
        config_file: cli.config,
        home: cli.home,
        listen: cli.listen,
        database: cli.database,
    };
    let result = match cli.command {
        Command::Serve => commands::serve(&global),
        Command::Run {
            model,
            prompt,
            temperature,
            max_tokens,
            seed,
        } => commands::run(
            &global,
            commands::RunArgs {
                model,
                prompt,
                temperature,
                max_tokens,
                seed,
            },
        ),
        Command::Pull { model } => commands::pull(&global, &model),
        Command::Import { path, name, copy } => commands::import(&global, &path, &name, copy),
        Command::List => commands::list(&global),
        Command::Show {
            model,
            verbose,
            path,
        } => commands::show(&global, &model, verbose, path),
        Command::Rm { model } => commands::rm(&global, &model),
        Command::Ps => commands::ps(&global),
        Command::Config => commands::config(&global),
        Command::Bench(what) => commands::bench(&global, what),
        Command::User(c) => commands::user(&global, c),
        Command::Key(c) => commands::key(&global, c),
        Command::Audit(c) => commands::audit(&global, c),
        Command::Version => commands::version(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
