//! Dispatching one stage's instructions: what each does to the image config and history, and
//! what the filesystem steps (RUN, COPY, ADD, WORKDIR) must do, with every word expanded.
//!
//! Config and history follow BuildKit's Dockerfile frontend, so `hull history` reads like
//! `docker history` of a BuildKit build: `created_by` is the instruction as BuildKit writes it
//! (`RUN /bin/sh -c make # buildkit`, `ENV A=b`, `CMD ["sh" "-c" "x"]`), the comment of every
//! entry is `buildkit.dockerfile.v0`, and metadata-only steps are `empty_layer`.
//!
//! A filesystem step that changes nothing (a WORKDIR that already exists, a RUN that writes
//! nothing) adds no layer and is recorded `empty_layer`, as BuildKit drops empty diffs.

use std::collections::BTreeMap;

use hull_dockerfile::{
    Command, Healthcheck, Instruction, InstructionKind, Lexer, Mount, NetworkMode, Source,
};
use hull_oci::{ContainerConfig, HealthConfig, History, ImageConfig};

use crate::args::{BuildArgs, GlobalArgs, StageVars};
use crate::error::BuildError;

/// The comment BuildKit puts on each history entry it writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The `PATH` of a stage without one (BuildKit's default on Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default shell of shell-form commands on Linux.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// A RUN step, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The process: shell-form commands wrapped in the stage's shell.
    pub args: Vec<String>,
    /// The process environment: the image's `Env`, then declared build arguments that no ENV
    /// shadows, then the proxy variables given.
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
    /// Heredoc files a shell-form command reads (`RUN <<EOF`): (fd, content). They are
    /// already part of `args` (see [`heredoc_script`]); kept for the cache key.
    pub heredocs: Vec<(u32, String)>,
    /// Files the process finds read-only in `/dev/pipes/` (name, content), mode 0755: a
    /// `RUN <<EOF` whose body starts with `#!` runs `/dev/pipes/EOF`, as BuildKit does.
    pub pipes: Vec<(String, String)>,
}

/// Where a `RUN <<EOF` script with a `#!` line is mounted.
pub const PIPES_DIR: &str = "/dev/pipes";

/// The shell script of a shell-form RUN with heredocs, BuildKit's way:
/// - a command that is only one heredoc (`RUN <<EOF`) runs the body as the script (a body
///   starting with `#!` is written to `/dev/pipes/NAME` and that file is run instead);
/// - otherwise the command line and each body with its delimiter are joined into one script,
///   so the shell itself feeds every body to its file descriptor (`cat <<EOF`, `3<<EOF`).
///
/// The body is never expanded by the builder: the shell that runs it does that.
pub fn heredoc_script(
    command: &str,
    heredocs: &[hull_dockerfile::Heredoc],
    pipes: &mut Vec<(String, String)>,
) -> String {
    let [only] = heredocs else {
        return join_heredocs(command, heredocs);
    };
    if !is_lone_heredoc(command, &only.name) {
        return join_heredocs(command, heredocs);
    }
    let body = only.content().into_owned();
    if body.starts_with("#!") {
        pipes.push((only.name.clone(), body));
        return format!("{PIPES_DIR}/{}", only.name);
    }
    body
}

fn join_heredocs(command: &str, heredocs: &[hull_dockerfile::Heredoc]) -> String {
    let mut full = command.to_string();
    for h in heredocs {
        full.push('\n');
        full.push_str(&h.raw_content);
        full.push_str(&h.name);
    }
    full
}

/// Whether `command` is nothing but a heredoc marker (`<<EOF`, `<<-"EOF"`, `3<<EOF`).
fn is_lone_heredoc(command: &str, name: &str) -> bool {
    let rest = command
        .trim()
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
    let unquoted: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    !rest.contains('<') && unquoted == name
}

/// A COPY or ADD step, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    pub add: bool,
    /// `--from`, expanded: a stage name/index or an image.
    pub from: Option<String>,
    /// Sources, expanded (paths) or inline (heredocs: file name and content).
    pub sources: Vec<CopySource>,
    /// The destination, absolute (a relative one is joined to the working directory); a
    /// trailing `/` is kept, since it means "into this directory".
    pub dest: String,
    /// The destination as written (expanded): what the history shows.
    pub dest_written: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD: unpack local archives (`None`: the default, yes for local files).
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path(String),
    Inline { name: String, content: String },
}

/// What an instruction asks of the filesystem, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Only the config changed.
    None,
    Run(RunStep),
    Copy(CopyStep),
    /// WORKDIR: make sure this directory exists (owned by the stage's user).
    Mkdir {
        path: String,
        user: String,
    },
}

/// One dispatched instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub action: Action,
    /// The history entry's `created_by` (before ` # buildkit` is appended to layer steps).
    pub created_by: String,
    /// A canonical description of the resolved instruction for the cache key: two
    /// instructions with the same text here do the same thing to the same parent.
    pub cache_text: String,
}

/// A stage being built: its config, variables and shell.
#[derive(Debug, Clone)]
pub struct StageState {
    pub config: ImageConfig,
    pub vars: StageVars,
    /// Whether a CMD was set in this stage (an ENTRYPOINT then keeps it).
    cmd_set: bool,
    lexer: Lexer,
}

impl StageState {
    /// Starts a stage on its base image's config (for `scratch`, an empty config of
    /// `platform`).
    pub fn new(base: ImageConfig, lexer: Lexer) -> StageState {
        let env = base
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        StageState {
            vars: StageVars::from_image_env(&env),
            config: base,
            cmd_set: false,
            lexer,
        }
    }

    fn container(&mut self) -> &mut ContainerConfig {
        self.config
            .config
            .get_or_insert_with(ContainerConfig::default)
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .unwrap_or_else(default_shell)
    }

    pub fn user(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    pub fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }

    /// The environment RUN steps get (see [`RunStep::env`]).
    pub fn run_env(&self, build_args: &BuildArgs) -> Vec<String> {
        let mut env: Vec<String> = self
            .vars
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        for (k, v) in self.vars.run_only_args() {
            env.push(format!("{k}={v}"));
        }
        for (k, v) in build_args.proxies() {
            if self.vars.env.get(&k).is_none() && self.vars.args.get(&k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }

    fn expand(&self, word: &str, line: usize) -> Result<String, BuildError> {
        self.lexer
            .expand(word, &self.vars)
            .map_err(|e| BuildError::at(line, e.to_string()))
    }

    fn expand_opt(&self, word: &Option<String>, line: usize) -> Result<Option<String>, BuildError> {
        word.as_ref().map(|w| self.expand(w, line)).transpose()
    }

    /// Applies one instruction. Config changes happen here; the returned action is for the
    /// caller to perform. History entries are appended by [`StageState::record`].
    pub fn dispatch(
        &mut self,
        ins: &Instruction,
        globals: &GlobalArgs,
        build_args: &BuildArgs,
    ) -> Result<Dispatched, BuildError> {
        let line = ins.span.start;
        let meta = |created_by: String| Dispatched {
            action: Action::None,
            cache_text: created_by.clone(),
            created_by,
        };
        Ok(match &ins.kind {
            InstructionKind::Arg(decls) => {
                self.vars
                    .declare(decls, globals, build_args, &self.lexer)
                    .map_err(|e| BuildError::at(line, e.to_string()))?;
                let parts: Vec<String> = decls
                    .iter()
                    .map(|d| match self.vars.args.get(&d.name) {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    })
                    .collect();
                meta(format!("ARG {}", parts.join(" ")))
            }
            InstructionKind::Env(pairs) => {
                let mut parts = Vec::new();
                for kv in pairs {
                    let key = self.expand(&kv.key, line)?;
                    let value = self.expand(&kv.value, line)?;
                    self.vars.env.set(&key, value.clone());
                    let env = self.container().env.get_or_insert_with(Vec::new);
                    let entry = format!("{key}={value}");
                    match env
                        .iter_mut()
                        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
                    {
                        Some(slot) => *slot = entry.clone(),
                        None => env.push(entry.clone()),
                    }
                    parts.push(entry);
                }
                meta(format!("ENV {}", parts.join(" ")))
            }
            InstructionKind::Label(pairs) => {
                let mut parts = Vec::new();
                for kv in pairs {
                    let key = self.expand(&kv.key, line)?;
                    let value = self.expand(&kv.value, line)?;
                    parts.push(format!("{key}={value}"));
                    self.container()
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key, value);
                }
                meta(format!("LABEL {}", parts.join(" ")))
            }
            InstructionKind::Maintainer(name) => {
                self.config.author = Some(name.clone());
                meta(format!("MAINTAINER {name}"))
            }
            InstructionKind::Cmd(c) => {
                let args = self.command_args(c);
                self.container().cmd = Some(args.clone());
                self.cmd_set = true;
                meta(format!("CMD {}", go_quoted(&args)))
            }
            InstructionKind::Entrypoint(c) => {
                let args = self.command_args(c);
                let cmd_set = self.cmd_set;
                let cc = self.container();
                cc.entrypoint = Some(args.clone());
                // An inherited CMD makes no sense with a new ENTRYPOINT (Docker's rule).
                if !cmd_set {
                    cc.cmd = None;
                }
                meta(format!("ENTRYPOINT {}", go_quoted(&args)))
            }
            InstructionKind::Shell(words) => {
                self.container().shell = Some(words.clone());
                meta(format!("SHELL [{}]", words.join(" ")))
            }
            InstructionKind::User(u) => {
                let u = self.expand(u, line)?;
                self.container().user = Some(u.clone());
                meta(format!("USER {u}"))
            }
            InstructionKind::Stopsignal(s) => {
                let s = self.expand(s, line)?;
                self.container().stop_signal = Some(s.clone());
                meta(format!("STOPSIGNAL {s}"))
            }
            InstructionKind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    for word in self.expand(p, line)?.split_whitespace() {
                        list.extend(expose_ports(word).map_err(|m| BuildError::at(line, m))?);
                    }
                }
                let map = self
                    .container()
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for p in &list {
                    map.insert(p.clone(), serde_json::json!({}));
                }
                meta(format!("EXPOSE {}", list.join(" ")))
            }
            InstructionKind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(v, line)?;
                    if v.trim().is_empty() {
                        return Err(BuildError::at(
                            line,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    list.push(v);
                }
                let map = self.container().volumes.get_or_insert_with(BTreeMap::new);
                for v in &list {
                    map.insert(v.clone(), serde_json::json!({}));
                }
                meta(format!("VOLUME [{}]", list.join(" ")))
            }
            InstructionKind::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthConfig {
                        test: Some(vec!["NONE".to_string()]),
                        ..HealthConfig::default()
                    },
                    Healthcheck::Cmd {
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                        ..
                    } => {
                        let ns = |d: &Option<std::time::Duration>| {
                            d.filter(|d| !d.is_zero())
                                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                        };
                        HealthConfig {
                            test: Some(h.test()),
                            interval: ns(interval),
                            timeout: ns(timeout),
                            start_period: ns(start_period),
                            start_interval: ns(start_interval),
                            retries: retries.filter(|r| *r > 0).map(i64::from),
                        }
                    }
                };
                let text = format!(
                    "HEALTHCHECK {}",
                    go_quoted(hc.test.as_deref().unwrap_or_default())
                );
                self.container().healthcheck = Some(hc);
                meta(text)
            }
            InstructionKind::Onbuild(o) => {
                self.container()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                meta(format!("ONBUILD {}", o.expression))
            }
            InstructionKind::Workdir(w) => {
                let w = self.expand(w, line)?;
                let path = join_path(&self.workdir(), &w);
                self.container().working_dir = Some(path.clone());
                Dispatched {
                    action: Action::Mkdir {
                        path: path.clone(),
                        user: self.user(),
                    },
                    cache_text: format!("WORKDIR {path} (user {})", self.user()),
                    created_by: format!("WORKDIR {path}"),
                }
            }
            InstructionKind::Run(r) => {
                let mut pipes = Vec::new();
                let args = match &r.command {
                    Command::Exec(a) => a.clone(),
                    Command::Shell(s) => {
                        let mut a = self.shell();
                        a.push(heredoc_script(s, &r.heredocs, &mut pipes));
                        a
                    }
                };
                let mut mounts = Vec::new();
                for m in &r.mounts {
                    let vars = &self.vars;
                    let lexer = &self.lexer;
                    mounts.push(
                        Mount::parse_expanded(&m.raw, &mut |w: &str| lexer.expand(w, vars))
                            .map_err(|e| BuildError::at(line, e.to_string()))?,
                    );
                }
                let heredocs = r
                    .heredocs
                    .iter()
                    .map(|h| (h.fd, h.content().into_owned()))
                    .collect();
                // BuildKit prefixes the build arguments a RUN sees: `|2 A=1 B=2 /bin/sh -c …`.
                let used = self.vars.run_only_args();
                let prefix = if used.is_empty() {
                    String::new()
                } else {
                    let kv: Vec<String> = used.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("|{} {} ", used.len(), kv.join(" "))
                };
                let step = RunStep {
                    env: self.run_env(build_args),
                    user: self.user(),
                    workdir: self.workdir(),
                    args,
                    mounts,
                    network: r.network.unwrap_or(NetworkMode::Default),
                    heredocs,
                    pipes,
                };
                Dispatched {
                    created_by: format!("RUN {prefix}{}", step.args.join(" ")),
                    cache_text: format!(
                        "RUN {:?} env={:?} user={:?} cwd={:?} net={:?} mounts={:?} heredocs={:?}",
                        step.args,
                        step.env,
                        step.user,
                        step.workdir,
                        step.network,
                        step.mounts.iter().map(|m| &m.raw).collect::<Vec<_>>(),
                        step.heredocs
                    ),
                    action: Action::Run(step),
                }
            }
            InstructionKind::Copy(c) => {
                let step = CopyStep {
                    add: false,
                    from: self.expand_opt(&c.from, line)?,
                    sources: self.sources(&c.sources, line)?,
                    dest: self.dest(&c.dest, line)?,
                    dest_written: self.expand(&c.dest, line)?,
                    chown: self.expand_opt(&c.chown, line)?,
                    chmod: self.expand_opt(&c.chmod, line)?,
                    link: c.link,
                    parents: c.parents,
                    exclude: c
                        .exclude
                        .iter()
                        .map(|e| self.expand(e, line))
                        .collect::<Result<_, _>>()?,
                    unpack: None,
                };
                self.copy_dispatched("COPY", step)
            }
            InstructionKind::Add(a) => {
                let step = CopyStep {
                    add: true,
                    from: None,
                    sources: self.sources(&a.sources, line)?,
                    dest: self.dest(&a.dest, line)?,
                    dest_written: self.expand(&a.dest, line)?,
                    chown: self.expand_opt(&a.chown, line)?,
                    chmod: self.expand_opt(&a.chmod, line)?,
                    link: a.link,
                    parents: false,
                    exclude: a
                        .exclude
                        .iter()
                        .map(|e| self.expand(e, line))
                        .collect::<Result<_, _>>()?,
                    unpack: a.unpack,
                };
                for s in &step.sources {
                    if let CopySource::Path(p) = s
                        && is_remote(p)
                    {
                        return Err(BuildError::at(
                            line,
                            format!(
                                "ADD {p}: remote sources (URLs and git repositories) are not supported offline; download the file into the build context and ADD or COPY it from there"
                            ),
                        ));
                    }
                }
                self.copy_dispatched("ADD", step)
            }
        })
    }

    fn copy_dispatched(&self, keyword: &str, step: CopyStep) -> Dispatched {
        let mut words: Vec<String> = Vec::new();
        if let Some(f) = &step.from {
            words.push(format!("--from={f}"));
        }
        if let Some(c) = &step.chown {
            words.push(format!("--chown={c}"));
        }
        if let Some(c) = &step.chmod {
            words.push(format!("--chmod={c}"));
        }
        if step.link {
            words.push("--link".to_string());
        }
        for s in &step.sources {
            words.push(match s {
                CopySource::Path(p) => p.clone(),
                CopySource::Inline { name, .. } => format!("<<{name}"),
            });
        }
        words.push(step.dest_written.clone());
        Dispatched {
            created_by: format!("{keyword} {}", words.join(" ")),
            cache_text: format!("{keyword} {step:?} user={:?}", self.user()),
            action: Action::Copy(step),
        }
    }

    fn sources(&self, sources: &[Source], line: usize) -> Result<Vec<CopySource>, BuildError> {
        sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => Ok(CopySource::Path(self.expand(p, line)?)),
                Source::Heredoc(h) => {
                    let content = if h.expand {
                        Lexer::new('\\')
                            .skip_quotes(true)
                            .expand(&h.content(), &self.vars)
                            .map_err(|e| BuildError::at(line, e.to_string()))?
                    } else {
                        h.content().into_owned()
                    };
                    Ok(CopySource::Inline {
                        name: h.name.clone(),
                        content,
                    })
                }
            })
            .collect()
    }

    fn dest(&self, dest: &str, line: usize) -> Result<String, BuildError> {
        let d = self.expand(dest, line)?;
        let dir = d.ends_with('/') || d == "." || d.ends_with("/.");
        let mut joined = join_path(&self.workdir(), &d);
        if dir && !joined.ends_with('/') {
            joined.push('/');
        }
        Ok(joined)
    }

    /// Appends the history entry of a dispatched step.
    pub fn record(&mut self, d: &Dispatched, with_layer: bool, created: &str) {
        self.config.history.push(History {
            created: Some(created.to_string()),
            created_by: Some(if with_layer {
                format!("{} # buildkit", d.created_by)
            } else {
                d.created_by.clone()
            }),
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer: !with_layer,
            ..History::default()
        });
    }

    fn command_args(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(a) => a.clone(),
            Command::Shell(s) => {
                let mut a = self.shell();
                a.push(s.clone());
                a
            }
        }
    }
}

/// Whether an ADD source is a URL or git reference (not a context path).
fn is_remote(p: &str) -> bool {
    let lower = p.to_ascii_lowercase();
    lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("git@")
        || lower.starts_with("git://")
        || lower.starts_with("ssh://")
}

/// `base` joined with `p` and cleaned, absolute; `p` absolute stands alone.
pub fn join_path(base: &str, p: &str) -> String {
    let full = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{base}/{p}")
    };
    let mut out: Vec<&str> = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Go's `%q` of a `[]string`: `["a" "b c"]`.
fn go_quoted(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| serde_json::to_string(a).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// One EXPOSE word to `port/proto` keys; ranges (`8000-8002`) expand as Docker expands them.
fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for container port: {ports}"
        ));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dispatches every instruction of the (single-stage) Dockerfile on a base config.
    fn run(
        text: &str,
        base: ImageConfig,
        build_args: &[(&str, &str)],
    ) -> (StageState, Vec<Dispatched>) {
        let df = hull_dockerfile::parse(text).unwrap();
        let ba = BuildArgs::new(
            build_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let lexer = Lexer::new(df.directives.escape_char());
        let mut globals = GlobalArgs::new(&[]);
        for g in &df.global_args {
            if let InstructionKind::Arg(d) = &g.kind {
                for d in d {
                    globals.declare(d, &ba, &lexer).unwrap();
                }
            }
        }
        let mut st = StageState::new(base, lexer);
        let mut out = Vec::new();
        for ins in &df.stages[0].instructions {
            let d = st.dispatch(ins, &globals, &ba).unwrap();
            st.record(
                &d,
                !matches!(d.action, Action::None),
                "2026-01-01T00:00:00Z",
            );
            out.push(d);
        }
        (st, out)
    }

    fn base_with(cmd: &[&str], env: &[&str]) -> ImageConfig {
        ImageConfig {
            config: Some(ContainerConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                env: Some(env.iter().map(|s| s.to_string()).collect()),
                ..ContainerConfig::default()
            }),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn metadata_instructions_shape_the_config_like_docker() {
        let (st, _) = run(
            "FROM base\n\
             ENV A=1 B=\"two words\"\n\
             ENV A=${A}1\n\
             LABEL org.example.v=\"$B\" plain=x\n\
             EXPOSE 80 53/udp 8000-8001\n\
             VOLUME /data\n\
             VOLUME [\"/logs\"]\n\
             USER app:app\n\
             WORKDIR /srv\n\
             WORKDIR sub/../app\n\
             STOPSIGNAL SIGTERM\n\
             SHELL [\"/bin/bash\", \"-eu\", \"-c\"]\n\
             CMD run $A\n\
             ONBUILD RUN echo child\n\
             HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/\n\
             MAINTAINER someone\n",
            base_with(&["sh"], &["PATH=/bin"]),
            &[],
        );
        let c = st.config.config.clone().unwrap();
        assert_eq!(c.env.unwrap(), vec!["PATH=/bin", "A=11", "B=two words"]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["org.example.v"], "two words");
        assert_eq!(labels["plain"], "x");
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        let vols: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(vols, vec!["/data", "/logs"]);
        assert_eq!(c.user.as_deref(), Some("app:app"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
        // shell-form CMD goes through SHELL, unexpanded (the shell expands it at run time)
        assert_eq!(c.cmd.unwrap(), vec!["/bin/bash", "-eu", "-c", "run $A"]);
        assert_eq!(c.on_build.unwrap(), vec!["RUN echo child"]);
        let hc = c.healthcheck.unwrap();
        assert_eq!(
            hc.test.unwrap(),
            vec!["CMD-SHELL", "curl -f http://localhost/"]
        );
        assert_eq!(hc.interval, Some(5_000_000_000));
        assert_eq!(hc.retries, Some(3));
        assert_eq!(hc.timeout, None);
        assert_eq!(st.config.author.as_deref(), Some("someone"));
    }

    #[test]
    fn history_reads_like_buildkit() {
        let (st, _) = run(
            "FROM base\nARG V=1\nENV A=b\nRUN echo $V\nCOPY --chown=1:1 a b /dst/\nCMD [\"sh\", \"-c\", \"x y\"]\nWORKDIR /w\n",
            ImageConfig::default(),
            &[],
        );
        let h: Vec<(String, bool)> = st
            .config
            .history
            .iter()
            .map(|h| (h.created_by.clone().unwrap(), h.empty_layer))
            .collect();
        assert_eq!(
            h,
            vec![
                ("ARG V=1".to_string(), true),
                ("ENV A=b".to_string(), true),
                (
                    "RUN |1 V=1 /bin/sh -c echo $V # buildkit".to_string(),
                    false
                ),
                ("COPY --chown=1:1 a b /dst/ # buildkit".to_string(), false),
                ("CMD [\"sh\" \"-c\" \"x y\"]".to_string(), true),
                ("WORKDIR /w # buildkit".to_string(), false),
            ]
        );
        assert!(
            st.config
                .history
                .iter()
                .all(|h| h.comment.as_deref() == Some(HISTORY_COMMENT))
        );
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_only() {
        let (st, _) = run(
            "FROM base\nENTRYPOINT [\"/app\"]\n",
            base_with(&["sh"], &[]),
            &[],
        );
        let c = st.config.config.unwrap();
        assert_eq!(c.entrypoint.unwrap(), vec!["/app"]);
        assert_eq!(c.cmd, None);
        let (st, _) = run(
            "FROM base\nCMD [\"--help\"]\nENTRYPOINT /app\n",
            base_with(&["sh"], &[]),
            &[],
        );
        let c = st.config.config.unwrap();
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "/app"]);
        assert_eq!(c.cmd.unwrap(), vec!["--help"]);
    }

    #[test]
    fn run_steps_see_args_env_and_proxies() {
        let (_, d) = run(
            "FROM base\nARG MODE=debug\nARG TOKEN\nENV MODE=env\nWORKDIR /src\nUSER 1000\nRUN --network=none --mount=type=cache,target=/root/.cache make\n",
            base_with(&[], &["PATH=/usr/bin"]),
            &[("TOKEN", "t"), ("HTTP_PROXY", "http://proxy:3128")],
        );
        let Action::Run(r) = &d[5].action else {
            panic!("{d:?}")
        };
        assert_eq!(r.args, vec!["/bin/sh", "-c", "make"]);
        assert_eq!(
            r.env,
            vec![
                "PATH=/usr/bin",
                "MODE=env",
                "TOKEN=t",
                "HTTP_PROXY=http://proxy:3128"
            ]
        );
        assert_eq!(r.user, "1000");
        assert_eq!(r.workdir, "/src");
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.mounts[0].target.as_deref(), Some("/root/.cache"));
        // the proxy is not in the history, the declared argument is
        assert_eq!(d[5].created_by, "RUN |1 TOKEN=t /bin/sh -c make");
    }

    #[test]
    fn copy_destinations_and_sources_resolve() {
        let (_, d) = run(
            "FROM base\nARG F=main.rs\nWORKDIR /app\nCOPY src/$F .\nCOPY a b sub/\nCOPY <<EOF conf/x.conf\nname=$F\nEOF\nADD --unpack=true site.tar.gz /srv\n",
            ImageConfig::default(),
            &[],
        );
        let Action::Copy(c) = &d[2].action else {
            panic!()
        };
        assert_eq!(c.sources, vec![CopySource::Path("src/main.rs".into())]);
        assert_eq!(c.dest, "/app/");
        let Action::Copy(c) = &d[3].action else {
            panic!()
        };
        assert_eq!(c.dest, "/app/sub/");
        let Action::Copy(c) = &d[4].action else {
            panic!()
        };
        assert_eq!(
            c.sources,
            vec![CopySource::Inline {
                name: "EOF".into(),
                content: "name=main.rs\n".into()
            }]
        );
        assert_eq!(c.dest, "/app/conf/x.conf");
        let Action::Copy(c) = &d[5].action else {
            panic!()
        };
        assert!(c.add);
        assert_eq!(c.unpack, Some(true));
        assert_eq!(c.dest, "/srv");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_line() {
        let df = hull_dockerfile::parse("FROM base\nEXPOSE 80/xyz\n").unwrap();
        let mut st = StageState::new(ImageConfig::default(), Lexer::new('\\'));
        let err = st
            .dispatch(
                &df.stages[0].instructions[0],
                &GlobalArgs::new(&[]),
                &BuildArgs::default(),
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "Dockerfile:2: invalid proto: xyz");
        let df = hull_dockerfile::parse("FROM base\nADD https://example.com/x.tgz /x\n").unwrap();
        let err = st
            .dispatch(
                &df.stages[0].instructions[0],
                &GlobalArgs::new(&[]),
                &BuildArgs::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Dockerfile:2: ADD https://example.com/x.tgz: remote sources"),
            "{err}"
        );
    }

    #[test]
    fn run_heredocs_become_the_shell_script_as_buildkit_makes_it() {
        let (_, d) = run(
            "FROM base\nRUN <<EOF\necho $HOME\nEOF\nRUN <<-EOF\n#!/bin/sh\n\techo x\nEOF\nRUN cat <<EOF > /a && cat 3<<'RAW' <&3\nbody $X\nEOF\nraw\nRAW\n",
            ImageConfig::default(),
            &[],
        );
        let Action::Run(r) = &d[0].action else {
            panic!("{d:?}")
        };
        // the body alone is the script, unexpanded
        assert_eq!(r.args, vec!["/bin/sh", "-c", "echo $HOME\n"]);
        assert!(r.pipes.is_empty());
        // a #! body is a file in /dev/pipes, tabs stripped for <<-
        let Action::Run(r) = &d[1].action else {
            panic!("{d:?}")
        };
        assert_eq!(r.args, vec!["/bin/sh", "-c", "/dev/pipes/EOF"]);
        assert_eq!(
            r.pipes,
            vec![("EOF".to_string(), "#!/bin/sh\necho x\n".to_string())]
        );
        // a command with heredocs: command line, bodies and delimiters, for the shell
        let Action::Run(r) = &d[2].action else {
            panic!("{d:?}")
        };
        assert_eq!(
            r.args,
            vec![
                "/bin/sh",
                "-c",
                "cat <<EOF > /a && cat 3<<'RAW' <&3\nbody $X\nEOF\nraw\nRAW"
            ]
        );
    }

    #[test]
    fn paths_join_and_clean() {
        assert_eq!(join_path("/", "a/b"), "/a/b");
        assert_eq!(join_path("/srv", "../x/./y"), "/x/y");
        assert_eq!(join_path("/srv", "/abs"), "/abs");
        assert_eq!(join_path("/", "../.."), "/");
    }
}
