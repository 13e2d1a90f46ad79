//! Composition root: parse the command line, load the config, then either run the server
//! or one administration command.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use estgate::cli::{self, Cli, Command};
use estgate::config::{Config, LogFormat};
use estgate::domain::{Clock, SystemClock};

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(cli: &Cli, args: &cli::ServeArgs) -> Result<(), String> {
    let config = cli::load_config(
        cli,
        args.listen.clone(),
        args.demo.then(|| cli::DEMO_HTTP_LISTEN.to_string()),
    )
    .map_err(|e| e.to_string())?;
    init_logging(&config);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let demo = if args.demo {
        estgate::app::prepare_files(&config, clock.now()).map_err(|e| e.to_string())?;
        // The same RA verbs `estgate … --operator demo` would call, before the listeners
        // open, so that the first request already finds the demo data.
        let ra = estgate::app::admin_ra(&config)
            .await
            .map_err(|e| e.to_string())?;
        let demo = estgate::demo::seed(&ra).await.map_err(|e| e.to_string())?;
        let path = config.data_dir.join("demo-credentials.toml");
        demo.write(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Some(demo)
    } else {
        None
    };
    let running = estgate::app::start(&config, clock)
        .await
        .map_err(|e| e.to_string())?;
    let demo = match demo {
        Some(mut demo) => {
            demo.admin = Some(
                estgate::demo::seed_admin(&running.ra)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            let path = config.data_dir.join("demo-credentials.toml");
            demo.write(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Some(demo)
        }
        None => None,
    };
    println!("estgate listening on https://{}", running.addr);
    if let Some(http) = running.http_addr {
        println!("CRL, CA certificate and OCSP on http://{http}/crl, /ca.cer, /ocsp");
    }
    println!("trust anchor: {}", config.trust_anchor.display());
    println!("EST base: {}/.well-known/est/", config.public_url);
    match estgate::app::enrollment_urls(&running.ra, &config).await {
        Ok(urls) => print!("{urls}"),
        Err(e) => tracing::warn!("listing the enrollment URLs: {e}"),
    }
    if let Some(demo) = demo {
        println!("{}", demo.instructions(&config));
    }
    let signal = stop_signal()
        .await
        .map_err(|e| format!("signal handler: {e}"))?;
    tracing::info!(signal, "shutting down");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, systemd's and container runtimes' stop: both drain
/// the same way, so a stop never cuts a request in progress.
async fn stop_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}

/// glibc's malloc keeps up to eight arenas per core, one for each thread that allocates
/// while another holds an arena, and after a large block is freed it raises the size from
/// which blocks get a mapping of their own, so the 19 MiB of every Argon2 verification then
/// stays in the heap. Both showed as resident memory that never shrank: 111 MB at c=32
/// keep-alive simpleenroll, 52 MB with two arenas and a fixed 256 KiB threshold. The
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` variables, when set, still decide.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; it runs first in `main`, before the
    // runtime or any other thread exists.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> ExitCode {
    tune_malloc();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("estgate: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(&cli, args).await,
        _ => match cli::load_config(&cli, None, None) {
            Ok(config) => cli::admin(&cli, &config).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("estgate: {e}");
            ExitCode::FAILURE
        }
    }
}
