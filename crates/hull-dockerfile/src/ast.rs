//! The typed syntax tree. Words are kept as written (unexpanded): what a word expands to depends
//! on build arguments and the stage's environment, which only the builder knows; it expands them
//! with [`crate::Lexer`] using the escape character in [`Directives::escape_char`].

use std::borrow::Cow;
use std::time::Duration;

use crate::mount::Mount;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The parser directives at the top of the file.
    pub directives: Directives,
    /// `ARG` instructions before the first `FROM` (usable in `FROM` lines, and inside a stage
    /// after a bare `ARG NAME` re-declares them).
    pub global_args: Vec<Instruction>,
    /// The build stages, in file order; never empty.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// The stage named `name` (stage names are case-insensitive), or the stage at index `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directives {
    /// The `syntax` directive (a frontend image reference).
    pub syntax: Option<String>,
    /// The `escape` directive: `\` or `` ` ``.
    pub escape: Option<char>,
    /// The `check` directive (build-check configuration), raw.
    pub check: Option<String>,
}

impl Directives {
    /// The escape character in force: the directive's, or `\`.
    pub fn escape_char(&self) -> char {
        self.escape.unwrap_or('\\')
    }
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The stage's `FROM` line.
    pub span: Span,
    /// The `FROM` line as written, with continuations joined.
    pub original: String,
    /// The base: an image reference, another stage's name, or `scratch` (unexpanded).
    pub base: String,
    /// The stage name after `AS`, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// `--platform` (unexpanded, e.g. `$BUILDPLATFORM`).
    pub platform: Option<String>,
    /// The stage's instructions, `FROM` excluded.
    pub instructions: Vec<Instruction>,
}

/// Lines `start..=end` of the Dockerfile, 1-based, heredoc bodies included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub span: Span,
    /// The instruction as written, continuations joined and surrounding blanks trimmed: the text
    /// Docker records as the history entry's `created_by`.
    pub original: String,
    pub kind: InstructionKind,
}

/// What an instruction says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Add(Add),
    Arg(Vec<ArgDecl>),
    Cmd(Command),
    Copy(Copy),
    Entrypoint(Command),
    Env(Vec<KeyValue>),
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Onbuild(Onbuild),
    Run(Run),
    Shell(Vec<String>),
    Stopsignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

impl InstructionKind {
    /// The instruction's keyword, upper-case.
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Stopsignal(_) => "STOPSIGNAL",
            InstructionKind::User(_) => "USER",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::Workdir(_) => "WORKDIR",
        }
    }

    /// Whether the builder expands variables in this instruction's words (BuildKit's
    /// `SupportsSingleWordExpansion` commands): ADD, ARG, COPY (paths and flag values), ENV
    /// and LABEL (keys and values), EXPOSE (split into words), STOPSIGNAL, USER, VOLUME and
    /// WORKDIR. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and MAINTAINER are not expanded, and
    /// ONBUILD's trigger is expanded when it runs in the child build. A stage's `base` and
    /// `platform` are expanded too, with the global args only. `RUN --mount` values are
    /// expanded through [`crate::Mount::parse_expanded`].
    pub fn expands_words(&self) -> bool {
        matches!(
            self,
            InstructionKind::Add(_)
                | InstructionKind::Arg(_)
                | InstructionKind::Copy(_)
                | InstructionKind::Env(_)
                | InstructionKind::Expose(_)
                | InstructionKind::Label(_)
                | InstructionKind::Stopsignal(_)
                | InstructionKind::User(_)
                | InstructionKind::Volume(_)
                | InstructionKind::Workdir(_)
        )
    }
}

/// A command in exec (JSON array) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `["executable", "arg"]`: run without a shell.
    Exec(Vec<String>),
    /// Anything else: one string handed to the stage's shell (`SHELL`, default `/bin/sh -c`).
    Shell(String),
}

/// A `name=value` pair of ENV or LABEL (raw, quotes included: expanding removes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One declaration of an `ARG` line: `NAME` or `NAME=default` (raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A heredoc (`<<EOF` … `EOF`) attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The body exactly as written, line endings included, tabs not stripped.
    pub raw_content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): the body is not expanded.
    /// When true, a COPY/ADD body is expanded with
    /// `Lexer::new('\\').skip_quotes(true)` (its quotes belong to the file, not to the
    /// Dockerfile); a RUN body is left to the shell that runs it.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from each body line (and from the delimiter line).
    pub chomp: bool,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
}

impl Heredoc {
    /// The body as the builder uses it: leading tabs stripped from every line for `<<-`.
    pub fn content(&self) -> Cow<'_, str> {
        if !self.chomp {
            return Cow::Borrowed(&self.raw_content);
        }
        let mut out = String::with_capacity(self.raw_content.len());
        for line in self.raw_content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        Cow::Owned(out)
    }
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `--mount` flags, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
    pub command: Command,
    /// Heredocs of a shell-form command, in order.
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

/// A source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path (or for ADD, a URL or git reference), unexpanded.
    Path(String),
    /// Inline content from a heredoc; the file is named after the delimiter.
    Heredoc(Heredoc),
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// `--from`: a stage name or index, or an image reference.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub sources: Vec<Source>,
    pub dest: String,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    /// `--checksum` (a digest to verify a remote source against).
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// `--unpack`: `None` when the flag is absent (archives from the context are unpacked,
    /// remote ones are not).
    pub unpack: Option<bool>,
    pub sources: Vec<Source>,
    pub dest: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD ...`. A `None` duration means "inherit / default" (Docker
    /// stores 0); BuildKit treats an explicit 0 the same way.
    Cmd {
        command: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

impl Healthcheck {
    /// The `Test` array Docker stores in the image config: `["NONE"]`, `["CMD", ...]` or
    /// `["CMD-SHELL", "..."]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            Healthcheck::None => vec!["NONE".to_owned()],
            Healthcheck::Cmd {
                command: Command::Exec(args),
                ..
            } => std::iter::once("CMD".to_owned())
                .chain(args.iter().cloned())
                .collect(),
            Healthcheck::Cmd {
                command: Command::Shell(s),
                ..
            } => {
                vec!["CMD-SHELL".to_owned(), s.clone()]
            }
        }
    }
}

/// `ONBUILD`: a trigger for builds that use this image as their base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger text stored in the image config's `OnBuild` list: the instruction after
    /// `ONBUILD`, with each heredoc's body and delimiter appended on new lines.
    pub expression: String,
    /// The trigger, parsed (it is checked now, though it runs in the child build).
    pub instruction: Box<Instruction>,
}
