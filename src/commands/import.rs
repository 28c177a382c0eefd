//! `openptl import`: NDJSON event envelopes (or an export) in atomic
//! batches, or a tracker CSV row by row (`tracker_csv.rs` reads it), through
//! the same validation as the API. The service must be stopped.

use std::path::Path;

use anyhow::Context;
use openptl_rules::RulesConfig;

use crate::open::open_app;
use crate::tracker_csv;

/// Imports `file` into `data_dir`: a tracker CSV when `format` says so or
/// the file is named `.csv`, otherwise NDJSON in batches of `batch`.
pub async fn run(
    config: RulesConfig,
    file: &Path,
    data_dir: &Path,
    batch: usize,
    format: Option<&str>,
    dry_run: bool,
    skip_invalid: bool,
) -> anyhow::Result<()> {
    let csv = match format {
        Some("csv") => true,
        Some("ndjson") => false,
        Some(other) => anyhow::bail!("--format {other}: use ndjson or csv"),
        None => file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    if csv {
        import_csv(config, file, data_dir, dry_run, skip_invalid).await
    } else {
        anyhow::ensure!(
            !dry_run && !skip_invalid,
            "--dry-run and --skip-invalid are for CSV imports"
        );
        import_ndjson(config, file, data_dir, batch).await
    }
}

/// `openptl import FILE.csv`: every row is checked first (with its line
/// number on failure); nothing is written if any row is invalid unless
/// `--skip-invalid`; each row is then appended atomically.
async fn import_csv(
    config: RulesConfig,
    file: &Path,
    data_dir: &Path,
    dry_run: bool,
    skip_invalid: bool,
) -> anyhow::Result<()> {
    let parse = |namespace: &uuid::Uuid| -> anyhow::Result<_> {
        let input =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        tracker_csv::read(input, namespace).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    };
    let app = open_app(config, data_dir).await?;
    let namespace = import_namespace(
        &app,
        data_dir,
        &parse(&tracker_csv::LEGACY_NAMESPACE)?.0,
        dry_run,
    )
    .await?;
    let (rows, mut errors) = parse(&namespace)?;
    let importer = openptl_app::access::Principal::system("csv-import");
    let mut valid = Vec::new();
    for row in rows {
        match app.check(row.envelopes.clone(), &importer).await {
            Ok(_) => valid.push(row),
            Err(e) => errors.push(tracker_csv::RowError {
                line: row.line,
                message: row_error(&e, &row),
            }),
        }
    }
    errors.sort_by_key(|e| e.line);
    for e in &errors {
        eprintln!("line {}: {}", e.line, e.message);
    }
    let events: usize = valid.iter().map(|r| r.envelopes.len()).sum();
    if dry_run {
        println!(
            "dry run: {} rows valid ({events} events), {} invalid; nothing written",
            valid.len(),
            errors.len()
        );
        anyhow::ensure!(errors.is_empty(), "{} invalid rows", errors.len());
        return Ok(());
    }
    if !errors.is_empty() && !skip_invalid {
        anyhow::bail!(
            "{} invalid rows (above): nothing was written; fix them, or pass --skip-invalid",
            errors.len()
        );
    }
    let (mut appended, mut replayed) = (0usize, 0usize);
    for row in &valid {
        let outcome = app
            .append(row.envelopes.clone(), &importer, true)
            .await
            .map_err(|e| anyhow::anyhow!("line {}: {}", row.line, row_error(&e, row)))?;
        let new: usize = outcome.new_by_type.iter().map(|(_, n)| *n as usize).sum();
        appended += new;
        replayed += outcome.appended.len() - new;
    }
    println!(
        "{} rows imported: {appended} events appended, {replayed} already stored; {} rows skipped",
        valid.len(),
        errors.len()
    );
    Ok(())
}

/// Where a data directory keeps the namespace of its import ids.
const IMPORT_KEY: &str = "import.key";

/// The namespace of the ids an import gives its events in `data_dir`
/// (decision 102): random per data directory and kept in `import.key`, so
/// that nobody can compute another trust's ids from its pathway ids. A data
/// directory that already holds imports of the first, unkeyed ids (found by
/// a referral of `rows` stored under them) keeps those, or a re-import would
/// append everything again.
async fn import_namespace(
    app: &openptl_app::App,
    data_dir: &Path,
    rows: &[tracker_csv::Row],
    dry_run: bool,
) -> anyhow::Result<uuid::Uuid> {
    let path = data_dir.join(IMPORT_KEY);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            return if text == "legacy" {
                Ok(tracker_csv::LEGACY_NAMESPACE)
            } else {
                uuid::Uuid::parse_str(text)
                    .with_context(|| format!("{} holds no namespace", path.display()))
            };
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
        Err(_) => {}
    }
    let mut legacy = false;
    for row in rows {
        let id = row.envelopes.first().and_then(|e| e["event_id"].as_str());
        if let Some(id) = id.and_then(|id| uuid::Uuid::parse_str(id).ok()) {
            if app.log().find_event(id).await?.is_some() {
                legacy = true;
                break;
            }
        }
    }
    let namespace = if legacy {
        tracker_csv::LEGACY_NAMESPACE
    } else {
        uuid::Uuid::new_v4()
    };
    if !dry_run {
        let text = if legacy {
            "legacy".to_string()
        } else {
            namespace.to_string()
        };
        let tmp = path.with_extension("key.tmp");
        std::fs::write(&tmp, format!("{text}\n"))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(namespace)
}

/// A row's refusal, naming the event of the row it concerns.
fn row_error(e: &openptl_app::AppError, row: &tracker_csv::Row) -> String {
    let event = |index: &Option<usize>| {
        index
            .and_then(|i| row.envelopes.get(i))
            .and_then(|v| v["type"].as_str())
            .map_or(String::new(), |t| format!(" (the {t} event)"))
    };
    match e {
        openptl_app::AppError::Rejected { index, error } => {
            format!("{error} [{}]{}", error.code(), event(index))
        }
        openptl_app::AppError::DuplicateEventId { index } => format!(
            "this row changes an event already imported{}; record a correction instead [duplicate_event_id]",
            event(index)
        ),
        other => other.to_string(),
    }
}

/// NDJSON envelopes, appended in atomic batches of `batch` events (an
/// export's metadata fields dropped).
async fn import_ndjson(
    config: RulesConfig,
    file: &Path,
    data_dir: &Path,
    batch: usize,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    // Every line is read as JSON before anything is appended: a file cut
    // short or damaged is refused whole (it once imported the batches
    // before the damage and stopped there). Standard input is read into
    // memory for that; a file is read twice.
    let open = || -> anyhow::Result<Box<dyn BufRead>> {
        Ok(Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        )))
    };
    let stdin_lines = if file == Path::new("-") {
        Some(
            std::io::stdin()
                .lock()
                .lines()
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else {
        None
    };
    let lines_of = || -> anyhow::Result<Box<dyn Iterator<Item = std::io::Result<String>> + '_>> {
        Ok(match &stdin_lines {
            Some(lines) => Box::new(lines.iter().cloned().map(Ok)),
            None => Box::new(open()?.lines()),
        })
    };
    for (n, line) in lines_of()?.enumerate() {
        let line = line?;
        if !line.trim().is_empty() {
            serde_json::from_str::<serde_json::Value>(&line)
                .with_context(|| format!("line {}: not JSON; nothing was imported", n + 1))?;
        }
    }
    let app = open_app(config, data_dir).await?;
    // Metadata an export adds; the log assigns these again.
    const METADATA: [&str; 5] = [
        "position",
        "version",
        "schema_version",
        "recorded_at",
        "actor",
    ];
    let (mut pending, mut lines): (Vec<serde_json::Value>, Vec<usize>) = (Vec::new(), Vec::new());
    let (mut appended, mut replayed) = (0usize, 0usize);
    let flush = |pending: Vec<serde_json::Value>, lines: Vec<usize>| {
        let app = app.clone();
        async move {
            let outcome = app
                .append(
                    pending,
                    &openptl_app::access::Principal::system("import"),
                    true,
                )
                .await
                .map_err(|e| {
                    let why = match e {
                        openptl_app::AppError::Rejected {
                            index: Some(i),
                            error,
                        } => format!("line {}: {} ({})", lines[i], error, error.code()),
                        other => other.to_string(),
                    };
                    // The batches before this one are kept (each batch is
                    // atomic): say so, and how to go on.
                    anyhow::anyhow!(
                        "{why}. Nothing from line {} on was imported; the events before it were. \
                         Correct the file and import it again: events with event ids are recorded once",
                        lines[0]
                    )
                })?;
            anyhow::Ok(outcome)
        }
    };
    for (n, line) in lines_of()?.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", n + 1))?;
        if let Some(map) = value.as_object_mut() {
            for key in METADATA {
                map.remove(key);
            }
        }
        pending.push(value);
        lines.push(n + 1);
        if pending.len() >= batch.max(1) {
            let outcome = flush(std::mem::take(&mut pending), std::mem::take(&mut lines)).await?;
            appended += outcome.appended.len();
            replayed += usize::from(outcome.all_replayed) * outcome.appended.len();
        }
    }
    if !pending.is_empty() {
        let outcome = flush(pending, lines).await?;
        appended += outcome.appended.len();
        replayed += usize::from(outcome.all_replayed) * outcome.appended.len();
    }
    println!(
        "{appended} events imported ({replayed} were already stored); log head {}",
        app.log().head()
    );
    Ok(())
}
