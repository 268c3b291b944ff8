//! Command-line surface of `wharf egress`; the binary only forwards to [`run`].

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::error::EgressError;
use crate::export::{self, TableFormat};
use crate::flowlog::layout::Layout;
use crate::owners::load::{load_owner_table, LoadedTable};
use crate::pods::PodNames;
use crate::report::model::{GroupBy, Report, ReportShape, DEFAULT_PRICE_PER_GB};
use crate::report::{collect, html, render};

/// `wharf egress ...`
#[derive(Debug, clap::Subcommand)]
pub enum EgressCommand {
    /// Attribute traffic in VPC flow logs to the owners of remote addresses, with cost.
    Report(ReportArgs),
    /// Inspect or export the IP-owner table.
    #[command(subcommand)]
    Ranges(RangesCommand),
}

/// Where owner data comes from.
#[derive(Debug, clap::Args)]
pub struct OwnerSources {
    /// Directory (or file) of published range files and ASN data; repeatable. See the README for sources.
    #[arg(long, value_name = "DIR")]
    pub ranges: Vec<PathBuf>,
    /// Your owners YAML (named CIDRs/ASNs, or Kubernetes infra/meta/asns vendor files; a directory of them
    /// works too). Beats every published range. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub owners: Vec<PathBuf>,
}

/// Report output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    Parquet,
    Html,
}

/// `wharf egress report`
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub sources: OwnerSources,
    /// `kubectl get pods -A -o json` output, to name local sources after pods.
    #[arg(long, value_name = "FILE")]
    pub pods: Option<PathBuf>,
    /// How rows are grouped.
    #[arg(long, value_enum, default_value = "owner")]
    pub by: GroupBy,
    /// Rows shown before the rest is folded into `other` (`unknown` is always shown).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
    /// USD per GB (2^30 bytes); the default is the NAT gateway data-processing price.
    #[arg(long, default_value_t = DEFAULT_PRICE_PER_GB, value_name = "X")]
    pub price_per_gb: f64,
    /// Output format; defaults to the extension of -o, else `table`.
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write the report here instead of standard output (required for parquet).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Field layout of flow logs that have no header line, e.g.
    /// "version srcaddr dstaddr pkt-srcaddr pkt-dstaddr bytes packets start end action log-status".
    #[arg(long, value_name = "FIELDS")]
    pub fields: Option<String>,
    /// Never draw a progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Flow logs (text, gzip, Parquet) and wharf access logs: files, directories or globs.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `wharf egress ranges ...`
#[derive(Debug, clap::Subcommand)]
pub enum RangesCommand {
    /// Show who owns each address.
    Lookup {
        #[command(flatten)]
        sources: OwnerSources,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// IPv4 or IPv6 addresses.
        #[arg(required = true, value_name = "IP")]
        ips: Vec<String>,
    },
    /// Write the owner table (CSV or Parquet) and SQL for Athena, Trino, BigQuery and SQLite into a directory.
    Export {
        #[command(flatten)]
        sources: OwnerSources,
        #[arg(long, value_enum, default_value = "csv")]
        format: TableFormat,
        /// USD per GB used by the SQL's cost column.
        #[arg(long, default_value_t = DEFAULT_PRICE_PER_GB, value_name = "X")]
        price_per_gb: f64,
        /// Output directory.
        #[arg(short = 'o', long = "output", value_name = "DIR", required = true)]
        output: PathBuf,
    },
}

/// Runs one `wharf egress` command.
pub fn run(cmd: EgressCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EgressCommand::Report(args) => run_report(&args),
        EgressCommand::Ranges(RangesCommand::Lookup { sources, json, ips }) => {
            run_lookup(&sources, json, &ips)
        }
        EgressCommand::Ranges(RangesCommand::Export {
            sources,
            format,
            price_per_gb,
            output,
        }) => {
            let loaded = load(&sources)?;
            let written = export::export(&loaded.table, &output, format, price_per_gb)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(sources: &OwnerSources) -> anyhow::Result<LoadedTable> {
    let loaded = load_owner_table(&sources.ranges, &sources.owners)?;
    for skipped in &loaded.skipped {
        eprintln!("warning: skipped {skipped}");
    }
    if loaded.table.prefix_count() == 0 {
        eprintln!("warning: no owner data loaded (give --ranges DIR and/or --owners FILE): every address will be unknown");
    }
    Ok(loaded)
}

fn infer_format(explicit: Option<ReportFormat>, output: Option<&Path>) -> ReportFormat {
    explicit
        .or_else(|| match output?.extension()?.to_str()? {
            "json" => Some(ReportFormat::Json),
            "csv" => Some(ReportFormat::Csv),
            "parquet" => Some(ReportFormat::Parquet),
            "html" | "htm" => Some(ReportFormat::Html),
            _ => None,
        })
        .unwrap_or(ReportFormat::Table)
}

fn run_report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if !(args.price_per_gb.is_finite() && args.price_per_gb >= 0.0) {
        return Err(EgressError::BadArgument {
            what: "--price-per-gb".into(),
            detail: format!("{} is not a non-negative price", args.price_per_gb),
        }
        .into());
    }
    let format = infer_format(args.format, args.output.as_deref());
    if format == ReportFormat::Parquet && args.output.is_none() {
        return Err(EgressError::BadArgument {
            what: "--format parquet".into(),
            detail: "needs -o FILE".into(),
        }
        .into());
    }
    let fields = args
        .fields
        .as_deref()
        .map(|list| Layout::parse(list, "--fields"))
        .transpose()?;
    let loaded = load(&args.sources)?;
    let pods = args.pods.as_deref().map(PodNames::load).transpose()?;
    let collected = collect(
        &args.paths,
        fields.as_ref(),
        &loaded.table,
        !args.no_progress,
    )?;
    let shape = ReportShape {
        group_by: args.by,
        top: args.top,
        price_per_gb: args.price_per_gb,
        pods: pods.as_ref(),
    };
    let report = Report::build(
        &collected.flows,
        &shape,
        collected.access_log,
        loaded.table.sources().to_vec(),
    );
    let text = match format {
        ReportFormat::Table => render::render_table(&report),
        ReportFormat::Json => render::render_json(&report) + "\n",
        ReportFormat::Csv => render::render_csv(&report),
        ReportFormat::Html => html::render_html(&report),
        ReportFormat::Parquet => {
            let path = args
                .output
                .as_deref()
                .context("parquet output needs -o FILE")?;
            render::write_parquet(&report, path)?;
            eprintln!("wrote {}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| EgressError::Write {
                path: path.clone(),
                source: e,
            })?;
            eprintln!("wrote {}", path.display());
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing the report to standard output")?,
    }
    if report.input.malformed > 0 && format != ReportFormat::Table {
        eprintln!(
            "warning: {} malformed lines skipped, first ones:",
            report.input.malformed
        );
        for example in &report.input.malformed_examples {
            eprintln!("  {example}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_lookup(sources: &OwnerSources, json: bool, ips: &[String]) -> anyhow::Result<ExitCode> {
    let addresses = ips
        .iter()
        .map(|text| {
            text.parse::<IpAddr>()
                .map_err(|_| EgressError::BadArgument {
                    what: text.clone(),
                    detail: "not an IPv4 or IPv6 address".into(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = load(sources)?;
    let mut results = Vec::new();
    let mut table = String::new();
    for addr in addresses {
        let found = loaded.table.lookup(addr);
        results.push(serde_json::json!({
            "ip": addr.to_string(),
            "owner": found.map(|m| m.owner.name.clone()),
            "service": found.and_then(|m| m.owner.service.clone()),
            "region": found.and_then(|m| m.owner.region.clone()),
            "asn": found.and_then(|m| m.owner.asn),
            "prefix": found.map(|m| m.prefix.to_string()),
            "tier": found.map(|m| m.tier.name()),
            "source": found.map(|m| m.owner.source.clone()),
        }));
        table.push_str(&match found {
            Some(m) => format!(
                "{addr}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                m.owner.name,
                m.owner.service.as_deref().unwrap_or("-"),
                m.owner.region.as_deref().unwrap_or("-"),
                m.prefix,
                m.tier.name(),
                m.owner.source
            ),
            None => format!("{addr}\tunknown\t-\t-\t-\t-\t-\n"),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("IP\tOWNER\tSERVICE\tREGION\tPREFIX\tTIER\tSOURCE\n{table}");
    }
    Ok(ExitCode::SUCCESS)
}
