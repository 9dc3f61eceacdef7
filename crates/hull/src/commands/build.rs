//! `hull build [-t NAME[:TAG]]... [-f Dockerfile] [--build-arg K=V]... [--target STAGE]
//! [--no-cache] [--platform P] [--label K=V]... [-q] [--progress auto|plain|quiet]
//! [-o type=docker|oci|local,dest=PATH] CONTEXT` and `hull builder prune`.
//!
//! Progress is written on stderr in BuildKit's plain layout (`#3 [2/4] RUN make`, `#3 CACHED`,
//! `#3 0.412 output line`, `#3 DONE 0.5s`), on a terminal too; `--progress plain` adds why each
//! step missed the cache. The image ID is the one line on stdout with `-q`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hull_build::{BuildEvent, BuildRequest, ImageSource, RunExecutor};
use hull_image::{ArchiveFormat, PullOptions, Store};
use hull_oci::{ImageId, Platform, Reference};

use crate::cli::{BuildArgs, BuilderPruneArgs, ProgressKind};
use crate::commands::{Ctx, parse_platform, parse_reference};
use crate::error::UserError;
use crate::output::{Printer, human};

/// Base images: the store's, else pulled (always pulled with `--pull`).
struct StoreImages<'a> {
    store: &'a Store,
    ctx: &'a Ctx,
    handle: tokio::runtime::Handle,
    always_pull: bool,
    log: &'a Mutex<Log>,
}

impl ImageSource for StoreImages<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ImageId, String> {
        let r = Reference::parse(reference).map_err(|e| e.to_string())?;
        if !self.always_pull
            && let Ok(id) = self.store.resolve(reference)
        {
            return Ok(id);
        }
        let client = self.ctx.client().map_err(|e| format!("{e:#}"))?;
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .line(&format!("pulling {}", crate::commands::familiar(&r)));
        let opts = PullOptions {
            platform: Some(platform.clone()),
            max_concurrent_downloads: self.ctx.max_concurrent_downloads,
            ..PullOptions::default()
        };
        let result = self
            .handle
            .block_on(hull_image::pull(
                self.store,
                &client,
                &r,
                &opts,
                hull_image::discard(),
            ))
            .map_err(|e| {
                format!(
                    "failed to resolve source metadata for {}: {e}",
                    crate::commands::familiar(&r)
                )
            })?;
        Ok(result.image)
    }
}

/// `[stage 2/5] RUN make` as BuildKit titles a step (an unnamed stage shows no name).
fn step_title(stage: &str, index: usize, total: usize, text: &str) -> String {
    if stage.parse::<usize>().is_ok() {
        format!("[{index}/{total}] {text}")
    } else {
        format!("[{stage} {index}/{total}] {text}")
    }
}

/// Where progress lines go.
struct Log {
    kind: ProgressKind,
    quiet: bool,
    /// When each step started (output lines carry the time since).
    steps: std::collections::HashMap<usize, Instant>,
    /// On a terminal (`--progress auto`): the live tree of running steps.
    live: Option<Live>,
}

/// How many of a running step's last output lines the live tree shows under it.
const LIVE_TAIL: usize = 5;
/// How many of a step's last output lines are kept to print if the build fails.
const KEPT_OUTPUT: usize = 200;

/// The terminal rendering, BuildKit's way: a header with the build's time and count of steps,
/// each running step as a live line with its last output lines under it (stages build in
/// parallel, so several run at once); a finished step becomes one permanent line with `CACHED`
/// or its time, and its output is folded away. When the build fails, the output of the steps
/// that were running is printed whole (as much as was kept), since that is where the error is.
struct Live {
    multi: indicatif::MultiProgress,
    header: indicatif::ProgressBar,
    running: std::collections::BTreeMap<usize, Running>,
    started: usize,
    finished: usize,
}

struct Running {
    bar: indicatif::ProgressBar,
    title: String,
    cached: bool,
    output: std::collections::VecDeque<String>,
}

impl Running {
    /// The lines under the step's live line: its last output lines, dimmed.
    fn tail(&self) -> String {
        let mut m = String::new();
        let skip = self.output.len().saturating_sub(LIVE_TAIL);
        for l in self.output.iter().skip(skip) {
            m.push_str("\n  \x1b[2m");
            m.push_str(l);
            m.push_str("\x1b[0m");
        }
        m
    }
}

impl Live {
    fn new(target: indicatif::ProgressDrawTarget) -> Live {
        let multi = indicatif::MultiProgress::with_draw_target(target);
        let header = multi.add(indicatif::ProgressBar::new_spinner());
        header.set_style(
            indicatif::ProgressStyle::with_template("[+] Building {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(100));
        Live {
            multi,
            header,
            running: std::collections::BTreeMap::new(),
            started: 0,
            finished: 0,
        }
    }

    fn count(&self) {
        self.header
            .set_message(format!("({}/{} steps)", self.finished, self.started));
    }

    fn step(&mut self, id: usize, title: String) {
        let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template(" {spinner} {prefix} {elapsed:.dim}{msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        let r = Running {
            bar,
            title,
            cached: false,
            output: std::collections::VecDeque::new(),
        };
        r.bar.set_prefix(r.title.clone());
        self.running.insert(id, r);
        self.started += 1;
        self.count();
    }

    fn output(&mut self, id: usize, data: &[u8]) {
        let Some(r) = self.running.get_mut(&id) else {
            return;
        };
        for l in String::from_utf8_lossy(data).lines() {
            if r.output.len() == KEPT_OUTPUT {
                r.output.pop_front();
            }
            // Control sequences of the step's own would break the tree's layout.
            r.output
                .push_back(l.chars().filter(|c| !c.is_control()).collect());
        }
        r.bar.set_message(r.tail());
    }

    fn done(&mut self, id: usize, elapsed: Duration) {
        let Some(r) = self.running.remove(&id) else {
            return;
        };
        let how = if r.cached {
            "CACHED".to_string()
        } else {
            format!("{:.1}s", elapsed.as_secs_f64())
        };
        r.bar.finish_and_clear();
        self.multi.remove(&r.bar);
        let _ = self
            .multi
            .println(format!(" \u{2714} {}  \x1b[2m{how}\x1b[0m", r.title));
        self.finished += 1;
        self.count();
    }

    /// Clears the tree; with `failed`, first prints what the running steps wrote.
    fn finish(mut self, failed: bool) {
        for (_, r) in std::mem::take(&mut self.running) {
            r.bar.finish_and_clear();
            self.multi.remove(&r.bar);
            if failed {
                let _ = self.multi.println(format!(" \u{2716} {}", r.title));
                for l in &r.output {
                    let _ = self.multi.println(format!("  {l}"));
                }
            }
        }
        self.header.finish_and_clear();
    }
}

impl Log {
    fn new(kind: ProgressKind, quiet: bool) -> Log {
        let live = (kind == ProgressKind::Auto && !quiet && std::io::stderr().is_terminal())
            .then(|| Live::new(indicatif::ProgressDrawTarget::stderr()));
        Log {
            kind,
            quiet,
            steps: std::collections::HashMap::new(),
            live,
        }
    }

    fn line(&mut self, s: &str) {
        if self.quiet {
            return;
        }
        match &self.live {
            Some(l) => {
                let _ = l.multi.println(s);
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{s}");
            }
        }
    }

    fn finish(&mut self, failed: bool) {
        if let Some(l) = self.live.take() {
            l.finish(failed);
        }
    }

    /// Events the live tree renders; false for those printed as lines either way.
    fn live_event(&mut self, ev: &BuildEvent) -> bool {
        let Some(live) = &mut self.live else {
            return false;
        };
        match ev {
            BuildEvent::Step {
                id,
                stage,
                index,
                total,
                text,
            } => live.step(*id, step_title(stage, *index, *total, text)),
            BuildEvent::Cached { id } => {
                if let Some(r) = live.running.get_mut(id) {
                    r.cached = true;
                }
            }
            BuildEvent::Output { id, data } => live.output(*id, data),
            BuildEvent::Done { id, elapsed } => live.done(*id, *elapsed),
            BuildEvent::Miss { .. } => {}
            BuildEvent::Context { .. } | BuildEvent::Warning(_) => return false,
        }
        true
    }

    fn event(&mut self, ev: &BuildEvent) {
        if self.live_event(ev) {
            return;
        }
        match ev {
            BuildEvent::Context {
                files,
                hashed,
                elapsed,
            } => self.line(&format!(
                "#0 [internal] load build context: {files} entries, {hashed} hashed, {:.1}s",
                elapsed.as_secs_f64()
            )),
            BuildEvent::Step {
                id,
                stage,
                index,
                total,
                text,
            } => {
                self.steps.insert(*id, Instant::now());
                self.line(&format!(
                    "#{id} {}",
                    step_title(stage, *index, *total, text)
                ));
            }
            BuildEvent::Cached { id } => self.line(&format!("#{id} CACHED")),
            BuildEvent::Miss { id, reason } => {
                if self.kind == ProgressKind::Plain {
                    self.line(&format!("#{id} cache miss: {reason}"));
                }
            }
            BuildEvent::Output { id, data } => {
                let t = self
                    .steps
                    .get(id)
                    .map_or(0.0, |s| s.elapsed().as_secs_f64());
                for l in String::from_utf8_lossy(data).lines() {
                    self.line(&format!("#{id} {t:.3} {l}"));
                }
            }
            BuildEvent::Done { id, elapsed } => {
                self.line(&format!("#{id} DONE {:.1}s", elapsed.as_secs_f64()))
            }
            BuildEvent::Warning(w) => self.line(&format!("WARNING: {w}")),
        }
    }
}

/// `KEY=VALUE`, or `KEY` taken from the environment (skipped when unset), as Docker does.
fn parse_build_args(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => bail!("invalid build argument {a:?}: expected KEY=VALUE"),
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// `--secret id=ID[,src=FILE|,env=VAR]` (Docker's form; `src` may be spelled `source`). With
/// neither, the variable named ID if set, else the file ID.
fn parse_secrets(specs: &[String], dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (mut id, mut src, mut env) = (None, None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => bail!("invalid --secret {spec:?}: expected id=ID,src=FILE or id=ID,env=VAR"),
            }
        }
        let id = id
            .filter(|i| !i.is_empty() && !i.contains('/'))
            .ok_or_else(|| anyhow::anyhow!("invalid --secret {spec:?}: it needs id=ID"))?;
        let env =
            env.or_else(|| (src.is_none() && std::env::var_os(&id).is_some()).then(|| id.clone()));
        let path = match (src, env) {
            (Some(p), _) => {
                if !p.is_file() {
                    bail!("secret {id}: {} is not a file", p.display());
                }
                std::fs::canonicalize(&p)
                    .with_context(|| format!("secret {id}: {}", p.display()))?
            }
            (None, Some(var)) => {
                let value = std::env::var(&var).map_err(|_| {
                    anyhow::anyhow!("secret {id}: environment variable {var} is not set")
                })?;
                let p = dir.join(&id);
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p)
                    .with_context(|| format!("writing secret {id}"))?;
                f.write_all(value.as_bytes())
                    .with_context(|| format!("writing secret {id}"))?;
                p
            }
            (None, None) => {
                let p = PathBuf::from(&id);
                if !p.is_file() {
                    bail!("secret {id}: give src=FILE or env=VAR");
                }
                p
            }
        };
        out.insert(id, path);
    }
    Ok(out)
}

/// `--ssh default|ID[=SOCKET]`: an ID without a socket is the agent at `$SSH_AUTH_SOCK`
/// (`auth_sock`). Only agent sockets are forwarded; Docker's `ID=KEYFILE` form is refused.
fn parse_ssh(
    specs: &[String],
    auth_sock: Option<std::ffi::OsString>,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) => (id, PathBuf::from(p)),
            None => {
                let Some(sock) = auth_sock.clone().filter(|s| !s.is_empty()) else {
                    bail!("--ssh {spec}: SSH_AUTH_SOCK is not set; give {spec}=SOCKET");
                };
                (spec.as_str(), PathBuf::from(sock))
            }
        };
        if id.is_empty() || id.contains(',') || path.as_os_str().is_empty() {
            bail!("invalid --ssh {spec:?}: expected default or ID[=SOCKET]");
        }
        let meta =
            std::fs::metadata(&path).with_context(|| format!("--ssh {id}: {}", path.display()))?;
        if !meta.file_type().is_socket() {
            bail!(
                "--ssh {id}: {} is not an SSH agent socket (key files are not supported; load keys into an agent with ssh-add)",
                path.display()
            );
        }
        let path = std::fs::canonicalize(&path)
            .with_context(|| format!("--ssh {id}: {}", path.display()))?;
        if out.insert(id.to_string(), path).is_some() {
            bail!("--ssh {id} is given twice");
        }
    }
    Ok(out)
}

fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label {l:?}: expected KEY=VALUE");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `-o type=docker,dest=FILE` and friends.
#[derive(Debug, PartialEq, Eq)]
enum OutputSpec {
    Archive(ArchiveFormat, PathBuf),
    Local(PathBuf),
}

fn parse_output(s: &str) -> anyhow::Result<OutputSpec> {
    let mut kind = None;
    let mut dest = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", t)) => kind = Some(t.to_string()),
            Some(("dest", d)) => dest = Some(PathBuf::from(d)),
            _ => bail!("invalid --output {s:?}: expected type=docker|oci|local,dest=PATH"),
        }
    }
    let dest = dest.ok_or_else(|| anyhow::anyhow!("--output {s:?} needs dest=PATH"))?;
    Ok(match kind.as_deref() {
        Some("docker") => OutputSpec::Archive(ArchiveFormat::DockerArchive, dest),
        Some("oci") => OutputSpec::Archive(ArchiveFormat::OciArchive, dest),
        Some("local") => OutputSpec::Local(dest),
        other => bail!(
            "unsupported --output type {}: use docker, oci or local",
            other.unwrap_or("(none)")
        ),
    })
}

/// The context directory: the one given, a tarball's content unpacked in a temporary
/// directory, or none for `-`.
enum ContextDir {
    None,
    Dir(PathBuf),
    Unpacked(tempfile::TempDir),
}

impl ContextDir {
    fn path(&self) -> Option<&Path> {
        match self {
            ContextDir::None => None,
            ContextDir::Dir(p) => Some(p),
            ContextDir::Unpacked(t) => Some(t.path()),
        }
    }
}

fn open_context(spec: &str) -> anyhow::Result<ContextDir> {
    if spec == "-" {
        return Ok(ContextDir::None);
    }
    if spec.contains("://") || spec.starts_with("git@") {
        return Err(
            UserError::new(format!("remote build contexts are not supported: {spec}"))
                .hint("clone or download it, then build from the local directory")
                .into(),
        );
    }
    let p = PathBuf::from(spec);
    let md = fs_err::metadata(&p).context("reading the build context")?;
    if md.is_dir() {
        return Ok(ContextDir::Dir(p));
    }
    // A tarball (plain, gzip or zstd), unpacked confined to a temporary directory.
    let dir = tempfile::tempdir().context("creating a directory for the context")?;
    let f = fs_err::File::open(&p)?;
    let (_, tar) = hull_layer::decompress_detected(std::io::BufReader::new(f))
        .with_context(|| format!("reading the context tarball {spec}"))?;
    let opts = hull_layer::UnpackOptions::for_current_user(hull_layer::WhiteoutMode::Apply);
    hull_layer::unpack(tar, dir.path(), &opts)
        .with_context(|| format!("unpacking the context tarball {spec}"))?;
    Ok(ContextDir::Unpacked(dir))
}

pub async fn run(ctx: &Ctx, args: BuildArgs) -> anyhow::Result<()> {
    let context = open_context(&args.context)?;
    let stdin_used = args.context == "-" || args.file.as_deref() == Some(Path::new("-"));
    if stdin_used && std::io::stdin().is_terminal() {
        return Err(UserError::new(
            "the Dockerfile is to be read from stdin, but stdin is a terminal",
        )
        .hint("pipe a Dockerfile in: hull build - < Dockerfile")
        .into());
    }
    let (dockerfile_text, dockerfile_path) = match (&args.file, context.path()) {
        (Some(f), _) if f == Path::new("-") => (read_stdin()?, None),
        (None, None) => (read_stdin()?, None),
        (Some(f), _) => (
            fs_err::read_to_string(f).context("reading the Dockerfile")?,
            Some(f.clone()),
        ),
        (None, Some(dir)) => {
            let f = dir.join("Dockerfile");
            (
                fs_err::read_to_string(&f).context("reading the Dockerfile")?,
                Some(f),
            )
        }
    };
    let dockerfile = hull_dockerfile::parse(&dockerfile_text)?;
    // BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile first.
    let dockerignore = match (&dockerfile_path, context.path()) {
        (Some(df), _) if Path::new(&format!("{}.dockerignore", df.display())).is_file() => Some(
            fs_err::read_to_string(format!("{}.dockerignore", df.display()))?,
        ),
        (_, Some(dir)) if dir.join(".dockerignore").is_file() => {
            Some(fs_err::read_to_string(dir.join(".dockerignore"))?)
        }
        _ => None,
    };
    let build_args = parse_build_args(&args.build_args)?;
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {s:?}: expected seconds"))
        })
        .transpose()?;
    let tags = args
        .tags
        .iter()
        .map(|t| parse_reference(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let output = args.output.as_deref().map(parse_output).transpose()?;
    // Secrets given by value (env=) are written to private files for the build's duration.
    let secret_dir = tempfile::tempdir().context("creating a directory for secrets")?;
    let secrets = parse_secrets(&args.secrets, secret_dir.path())?;
    // BuildKit's spelling of the same thing: --build-arg BUILDKIT_INLINE_CACHE=1.
    let inline_cache = match args.cache_to.as_deref() {
        None => build_args
            .get("BUILDKIT_INLINE_CACHE")
            .is_some_and(|v| v == "1"),
        Some("type=inline") => true,
        Some(other) => {
            return Err(UserError::new(format!("unsupported --cache-to {other}"))
                .hint("use --cache-to type=inline, then push the image and --cache-from it")
                .into());
        }
    };
    let store = ctx.store()?;
    let hash_cache = context.path().map(|dir| {
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let key = hull_oci::Digest::sha256_of(canonical.as_os_str().as_encoded_bytes());
        ctx.root
            .join("build")
            .join("context-hashes")
            .join(key.hex())
    });
    // The last build of this context and Dockerfile, to say why a step missed the cache.
    let step_history = {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let mut id = context
            .path()
            .map(|d| canonical(d).display().to_string())
            .unwrap_or_default();
        id.push('\0');
        id.push_str(
            &dockerfile_path
                .as_deref()
                .map(|d| canonical(d).display().to_string())
                .unwrap_or_else(|| "-".into()),
        );
        ctx.root
            .join("build")
            .join("step-history")
            .join(hull_oci::Digest::sha256_of(id.as_bytes()).hex())
    };
    let req = BuildRequest {
        dockerfile,
        context: context.path().map(Path::to_path_buf),
        dockerignore,
        options: hull_build::plan::BuildOptions {
            build_args,
            target: args.target.clone(),
            platform: parse_platform(args.platform.as_deref())?,
            build_platform: None,
        },
        no_cache: args.no_cache,
        tags: tags.clone(),
        labels: parse_labels(&args.labels)?,
        source_date_epoch,
        hash_cache,
        inline_cache,
        step_history: Some(step_history),
        secrets,
        ssh: parse_ssh(&args.ssh, std::env::var_os("SSH_AUTH_SOCK"))?,
        cache_from: args
            .cache_from
            .iter()
            .map(|c| {
                c.strip_prefix("type=registry,ref=")
                    .unwrap_or(c)
                    .to_string()
            })
            .collect(),
    };
    let quiet = args.quiet || args.progress == ProgressKind::Quiet;
    let log = Mutex::new(Log::new(args.progress, quiet));
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let result = tokio::task::block_in_place(|| {
        let images = StoreImages {
            store: &store,
            ctx,
            handle,
            always_pull: args.pull,
            log: &log,
        };
        let runner = super::build_runtime::Runtime::new(&ctx.root);
        hull_build::build(
            &store,
            &req,
            &runner as &dyn RunExecutor,
            &images,
            &mut |ev| log.lock().unwrap_or_else(|e| e.into_inner()).event(&ev),
        )
    });
    let mut log = log.into_inner().unwrap_or_else(|e| e.into_inner());
    log.finish(result.is_err());
    let result = result?;
    log.line(&format!("#{} exporting to image", result.steps + 1));
    log.line(&format!(
        "#{} writing image {} done",
        result.steps + 1,
        result.image
    ));
    for t in &tags {
        log.line(&format!("#{} naming to {} done", result.steps + 1, t));
    }
    log.line(&format!(
        "#{} DONE {:.1}s ({} steps, {} cached)",
        result.steps + 1,
        started.elapsed().as_secs_f64(),
        result.steps,
        result.cached
    ));
    match output {
        None => {}
        Some(OutputSpec::Archive(format, dest)) => {
            let mut sink = crate::commands::Sink::open(Some(&dest))?;
            {
                let mut w = sink.writer();
                let name = tags
                    .first()
                    .map(crate::commands::familiar)
                    .unwrap_or_else(|| result.image.to_string());
                store.save(&[name], format, &mut w)?;
                w.flush().context("writing the archive")?;
            }
            sink.finish()?;
        }
        Some(OutputSpec::Local(dest)) => {
            fs_err::create_dir_all(&dest)?;
            let (reader, writer) = std::io::pipe().context("exporting the image")?;
            let opts = hull_layer::UnpackOptions::for_current_user(hull_layer::WhiteoutMode::Apply);
            std::thread::scope(|s| -> anyhow::Result<()> {
                // The writer moves into the thread: its end closes when the export is done.
                let exporter = s.spawn(|| {
                    let mut writer = writer;
                    store.export(&result.image, &mut writer)
                });
                let unpacked = hull_layer::unpack(reader, &dest, &opts);
                let exported = exporter
                    .join()
                    .map_err(|_| anyhow::anyhow!("the export thread panicked"))?;
                exported?;
                unpacked.with_context(|| {
                    format!("writing the root filesystem to {}", dest.display())
                })?;
                Ok(())
            })?;
        }
    }
    if args.quiet {
        Printer::stdout().line(&result.image)?;
    }
    Ok(())
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the Dockerfile from stdin")?;
    Ok(s)
}

/// `hull builder prune`: drops every build cache record, then collects what nothing else
/// keeps (as `image prune` does).
pub fn prune(ctx: &Ctx, args: BuilderPruneArgs) -> anyhow::Result<()> {
    if !args.force
        && !crate::commands::confirm(
            "WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?",
        )?
    {
        return Ok(());
    }
    let store = ctx.store()?;
    let entries = store.metadata().cache_entries()?;
    let keys: Vec<_> = entries.iter().map(|(k, _, _)| k.clone()).collect();
    store.metadata().delete_cache(&keys)?;
    let report = store.prune(false)?;
    let mut out = Printer::stdout();
    if !keys.is_empty() {
        out.line("Deleted build cache objects:")?;
        for k in &keys {
            out.line(k.hex())?;
        }
        out.line("")?;
    }
    out.line(format!(
        "Total reclaimed space: {}",
        human::size(report.reclaimed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_tree_tracks_parallel_steps_and_shows_their_last_lines() {
        let mut log = Log {
            kind: ProgressKind::Auto,
            quiet: false,
            steps: std::collections::HashMap::new(),
            live: Some(Live::new(indicatif::ProgressDrawTarget::hidden())),
        };
        let step = |id, stage: &str| BuildEvent::Step {
            id,
            stage: stage.into(),
            index: 2,
            total: 3,
            text: format!("RUN make {stage}"),
        };
        log.event(&step(1, "a"));
        log.event(&step(2, "b"));
        let out: String = (1..=8).map(|i| format!("line {i}\n")).collect();
        log.event(&BuildEvent::Output {
            id: 2,
            data: format!("{out}\x1b[31mred\x1b[0m\n").into_bytes(),
        });
        log.event(&BuildEvent::Cached { id: 1 });
        let live = log.live.as_ref().unwrap();
        assert_eq!(live.running.len(), 2, "both stages run at once");
        assert_eq!(live.running[&2].bar.prefix(), "[b 2/3] RUN make b");
        let m = live.running[&2].tail();
        assert!(m.starts_with("\n  "), "{m}");
        assert_eq!(m.lines().count(), 1 + LIVE_TAIL, "{m}");
        assert!(m.contains("line 8") && !m.contains("line 4"), "{m}");
        assert!(m.contains("[31mred") && !m.contains("\x1b[31m"), "{m}");
        log.event(&BuildEvent::Done {
            id: 1,
            elapsed: Duration::from_millis(10),
        });
        let live = log.live.as_ref().unwrap();
        assert_eq!(live.running.keys().collect::<Vec<_>>(), [&2]);
        assert_eq!((live.finished, live.started), (1, 2));
        log.finish(true);
        assert!(log.live.is_none());
    }

    #[test]
    fn ssh_flags_name_agent_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let file = dir.path().join("id_ed25519");
        std::fs::write(&file, "key").unwrap();
        let env = Some(sock.clone().into_os_string());
        let m = parse_ssh(
            &["default".into(), format!("git={}", sock.display())],
            env.clone(),
        )
        .unwrap();
        assert_eq!(m["default"], sock.canonicalize().unwrap());
        assert_eq!(m["git"], sock.canonicalize().unwrap());
        let e = parse_ssh(&["default".into()], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SSH_AUTH_SOCK is not set"), "{e}");
        let e = parse_ssh(&[format!("k={}", file.display())], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an SSH agent socket"), "{e}");
        let e = parse_ssh(&["default".into(), "default".into()], env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
        assert!(parse_ssh(&["=x".into()], None).is_err());
    }

    #[test]
    fn build_args_and_outputs_parse() {
        // SAFETY: tests of this module do not read the variable concurrently.
        unsafe { std::env::set_var("HULL_TEST_FROM_ENV", "v") };
        let a = parse_build_args(&[
            "A=1".into(),
            "B=".into(),
            "HULL_TEST_FROM_ENV".into(),
            "HULL_TEST_UNSET_X".into(),
        ])
        .unwrap();
        assert_eq!(a.get("A").map(String::as_str), Some("1"));
        assert_eq!(a.get("B").map(String::as_str), Some(""));
        assert_eq!(a.get("HULL_TEST_FROM_ENV").map(String::as_str), Some("v"));
        assert!(!a.contains_key("HULL_TEST_UNSET_X"));
        assert!(parse_build_args(&["=x".into()]).is_err());
        assert_eq!(
            parse_output("type=docker,dest=out.tar").unwrap(),
            OutputSpec::Archive(ArchiveFormat::DockerArchive, "out.tar".into())
        );
        assert_eq!(
            parse_output("type=local,dest=/tmp/x").unwrap(),
            OutputSpec::Local("/tmp/x".into())
        );
        assert!(parse_output("type=registry,dest=x").is_err());
        assert!(parse_output("type=oci").is_err());
        assert!(parse_labels(&["=v".into()]).is_err());
    }
}
