//! Arguments of `hull search`.

use clap::Args;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Filter output based on conditions provided (stars=N, is-official=true|false)
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Format output: table, json, `table TEMPLATE` or a Go template
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Max number of search results (1 to 100)
    #[arg(long, default_value_t = 25, value_name = "N")]
    pub limit: usize,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Registry to search (default: the HOST of a HOST/TERM, else docker.io)
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
    /// What to search for, optionally prefixed by the registry: [HOST/]TERM
    #[arg(value_name = "TERM")]
    pub term: String,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn search_flags() {
        let cli = Cli::try_parse_from([
            "hull",
            "search",
            "--limit",
            "5",
            "-f",
            "stars=3",
            "--filter",
            "is-official=true",
            "--no-trunc",
            "--registry",
            "127.0.0.1:5000",
            "busy",
        ])
        .unwrap();
        let Command::Search(s) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(s.limit, 5);
        assert_eq!(s.filter, vec!["stars=3", "is-official=true"]);
        assert!(s.no_trunc);
        assert_eq!(s.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(s.term, "busy");
        assert!(Cli::try_parse_from(["hull", "search"]).is_err());
    }
}
