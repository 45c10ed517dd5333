//! `protolab merge a.json b.json …`: one report from the `bench --json` reports of generators
//! that loaded one target at the same time (the pods of deploy/k8s's load Job). Percentiles
//! come from the reports' HDR histograms added together; see [`protolab_load::Report::merge`].

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use protolab_load::{MergeError, Report};

use crate::Context;

/// Largest report read. A bench report is a few KiB plus its histograms (tens of KiB even over
/// every magnitude); anything this big is not one.
const MAX_REPORT_BYTES: u64 = 16 << 20;

/// `protolab merge` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// `protolab bench --json` outputs of one target, workload, message size and payload, run
    /// at the same time.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
}

/// Reads, checks and adds up the reports; prints the sum as `bench` prints one (`--json`: the
/// same results model, histograms included, so sums can be merged again).
pub async fn run(args: MergeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut merged: Option<Report> = None;
    for path in &args.reports {
        let report = read(path)?;
        protolab_load::check_histograms(&report).map_err(|err| explain(err, path))?;
        match &mut merged {
            None => merged = Some(report),
            Some(sum) => sum.merge(&report).map_err(|err| explain(err, path))?,
        }
    }
    let Some(merged) = merged else {
        bail_usage!("no report given: pass the files `protolab bench --json` wrote");
    };
    let mut out = std::io::stdout().lock();
    if ctx.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&merged)?)?;
    } else {
        writeln!(out, "reports  {} merged", args.reports.len())?;
        write!(out, "{}", crate::bench::render(&merged))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> anyhow::Result<Report> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_REPORT_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| {
            format!(
                "reading {} (is it the JSON `protolab bench --json` prints?)",
                path.display()
            )
        })?;
    if text.len() as u64 > MAX_REPORT_BYTES {
        bail_usage!(
            "{} is larger than {} MiB: not a `protolab bench --json` report",
            path.display(),
            MAX_REPORT_BYTES >> 20
        );
    }
    serde_json::from_str(&text).map_err(|err| {
        crate::usage(format!(
            "{} is not a `protolab bench --json` report: {err} (save only bench's standard output, e.g. `protolab bench --json URL > a.json`)",
            path.display()
        ))
    })
}

/// Reports of different loads are a command-line mistake (exit 2); a damaged or old report is
/// a failure of its own (exit 1).
fn explain(err: MergeError, path: &Path) -> anyhow::Error {
    let message = format!("{}: {err}", path.display());
    match err {
        MergeError::Mismatch { .. } => crate::usage(message),
        _ => anyhow::anyhow!(message),
    }
}
