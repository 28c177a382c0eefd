//! The `openptl` binary: one executable for the service and its tools
//! (SPEC 10). It parses the command line and hands each command to the
//! library (`src/lib.rs`), with the allocator and its page policy; nothing
//! else.

use clap::Parser;
use openptl::cli::{self, Cli, Command};
use openptl::{bench, commands};

/// mimalloc: the projection allocates many small, long-lived objects and the
/// append path many short-lived ones; glibc's allocator spent a third of a
/// rebuild consolidating free lists (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process (decision 207). mimalloc
/// asks the kernel for them on its arenas (and a kernel set to `always`
/// uses them unasked); a 2 MiB page holding a few live objects is resident
/// whole. At 1.4M pathways they held about 50 MiB (7 %) of the served
/// process's resident memory, for no measured gain in any view's time.
/// The kernel checks the flag at each page fault, so everything allocated
/// after it (all but the runtime's first few pages) gets 4 KiB pages.
fn no_huge_pages() {
    // SAFETY: `PR_SET_THP_DISABLE` sets one flag of this process's memory
    // map, takes no pointer and touches no memory; on a kernel without it
    // the call fails with EINVAL, which leaves everything as it was.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENPTL_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    no_huge_pages();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {}", cli::error_report(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Patient data and secrets: nothing this process writes is for other
    // users of the host.
    openptl_log::private_files();
    init_tracing(cli.log_json);
    let config = cli::rules(cli.rules.as_ref())?;
    match cli.command {
        Command::Serve(args) => commands::serve::run(args.options(config)?).await,
        Command::Token { data_dir, action } => {
            cli::as_owner_of(&[data_dir.join("tokens.json")])?;
            commands::token::run(&config, &data_dir, action)
        }
        Command::Verify {
            data_dir,
            anchors,
            store: None,
            ..
        } => {
            cli::as_owner_of(&[data_dir.join("segments"), data_dir.join("index")])?;
            commands::verify::run(&data_dir, anchors)
        }
        Command::Verify {
            anchors,
            store: Some(url),
            store_schema,
            ..
        } => commands::verify::run_postgres(&url, &store_schema, anchors).await,
        Command::Backup { data_dir, to } => commands::backup::backup(&data_dir, &to),
        Command::Restore { from, to } => commands::backup::restore(&from, &to),
        Command::RebuildIndex { data_dir } => {
            cli::as_owner_of(&[data_dir.join("segments"), data_dir.join("index")])?;
            commands::verify::rebuild_index(&data_dir)
        }
        Command::Bench {
            pathways,
            batch_events,
            batch_requests,
            single_requests,
            clients,
            views,
            forecast,
            data_dir,
            referral_days,
            memory_only,
            new_day,
            store,
        } => {
            if forecast {
                return bench::forecast(pathways, 1, referral_days).await;
            }
            if views {
                return bench::views(pathways, 1, data_dir, referral_days, memory_only, new_day)
                    .await;
            }
            bench::run(
                bench::BenchOptions {
                    pathways,
                    batch_events,
                    batch_requests,
                    single_requests,
                    clients,
                },
                store,
            )
            .await
        }
        Command::Export {
            data_dir,
            format,
            period,
        } => commands::export::run(config, &data_dir, &format, period.as_deref()).await,
        Command::Copy {
            from,
            to,
            from_schema,
            to_schema,
        } => commands::copy::run(&from, &to, &from_schema, &to_schema).await,
        Command::Openapi => commands::openapi::run(),
        Command::Import {
            file,
            data_dir,
            batch,
            format,
            dry_run,
            skip_invalid,
        } => {
            cli::as_owner_of(&[data_dir.join("segments"), data_dir.join("index")])?;
            commands::import::run(
                config,
                &file,
                &data_dir,
                batch,
                format.as_deref(),
                dry_run,
                skip_invalid,
            )
            .await
        }
        Command::Generate {
            pathways,
            seed,
            as_of,
        } => commands::generate::run(pathways, seed, as_of.as_deref()),
    }
}
