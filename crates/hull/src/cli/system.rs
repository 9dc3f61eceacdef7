//! Arguments of the `system` verbs.

use clap::Args;

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output: table, json, `table TEMPLATE` or a Go template
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Repair what can be repaired (drops damaged blobs and layers so they are fetched again)
    #[arg(long)]
    pub repair: bool,
}
