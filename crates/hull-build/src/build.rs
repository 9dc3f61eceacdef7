//! Running a build: the planned stages in order, each instruction dispatched, looked up in the
//! cache by its key, and performed on a writable snapshot when it misses.
//!
//! A step's cache key is the SHA-256 of its parent's key, the resolved instruction
//! ([`crate::step::Dispatched::cache_text`]: expanded words, environment, user, working
//! directory) and the content it reads: the build context's digest of each COPY/ADD source
//! (and of RUN `--mount=type=bind` sources), or the key of the stage `--from` names. A stage's
//! first key is its base's: the image ID, the other stage's last key, or `scratch` and the
//! platform. A hit reuses the stored config and layers without running anything.
//!
//! RUN steps go through a [`RunExecutor`], which front ends provide (an OCI runtime); this crate
//! does not start containers itself, so it can be tested with a fake executor and the runtime
//! can change without touching the build's semantics.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hull_dockerfile::{Dockerfile, Lexer, MountType};
use hull_image::Store;
use hull_layer::DiffOptions;
use hull_metadata::{CacheRecord, Lease};
use hull_oci::{
    Algorithm, ChainId, Descriptor, DiffId, Digest, Digester, ImageConfig, ImageId, Platform,
    Reference, RootFs, media_type,
};

use crate::args::BuildArgs;
use crate::context::{Context, HashCache};
use crate::copy::{CopyAttrs, copy_into, parse_chmod, plan_copy};
use crate::error::BuildError;
use crate::plan::{Base, BuildOptions, Plan};
use crate::step::{Action, CopyStep, Dispatched, RunStep, StageState};

/// A `RUN --mount` made concrete: what the container gets at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// A host directory or file (the build context's, another stage's, a cache directory).
    Bind {
        target: String,
        source: PathBuf,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
}

/// Runs a RUN step's process in a container made from `rootfs`.
pub trait RunExecutor: Sync {
    /// Runs `step` with `rootfs` as its root filesystem (writable) and `mounts` on top,
    /// passing everything it writes to stdout and stderr to `output`. Returns the exit code
    /// (128 + signal for a process killed by a signal).
    fn run(
        &self,
        rootfs: &Path,
        step: &RunStep,
        mounts: &[RunMount],
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<i32, String>;

    /// Resolves `--chown` user and group names against `rootfs`'s passwd and group files.
    fn resolve_owner(&self, rootfs: &Path, owner: &str) -> Result<(u32, u32), String>;

    /// The user namespace RUN processes get, when it is not the host's (a caller other than
    /// root): the owners a step's layer records are the ones its processes saw.
    fn owners(&self) -> Option<hull_layer::IdMap> {
        None
    }
}

/// What a RUN's mounts point at, kept until the run is over: views of other stages, scratch
/// directories (rw bind copies, secret copies, agent sockets), agent relays, and the
/// variables the process gets besides the step's own (secrets with `env=`, `SSH_AUTH_SOCK`).
#[derive(Default)]
struct RunResources {
    // Fields drop in declaration order: each relay removes its socket before its directory goes.
    relays: Vec<crate::ssh::AgentRelay>,
    views: Vec<hull_image::Snapshot>,
    scratch: Vec<tempfile::TempDir>,
    env: Vec<String>,
}

/// Copies the file `from` to `to` (which must not exist), owned by `uid:gid` with `mode`.
fn own_copy(from: &Path, to: &Path, uid: u32, gid: u32, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let named = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    let mut src = std::fs::File::open(from).map_err(|e| named(e, from))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| named(e, to))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| named(e, to))?;
    rustix::fs::fchown(
        &dst,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| named(e.into(), to))?;
    rustix::fs::fchmod(&dst, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
        .map_err(|e| named(e.into(), to))?;
    Ok(())
}

/// The largest secret a RUN may read as an environment variable (BuildKit's limit for any
/// secret is 500 KiB).
const MAX_ENV_SECRET: u64 = 500 * 1024;

/// A secret's value for an environment variable: UTF-8 without NUL, at most
/// [`MAX_ENV_SECRET`] bytes.
fn read_secret(id: &str, path: &Path, line: usize) -> Result<String, BuildError> {
    use std::io::Read as _;
    let err = |m: String| BuildError::at(line, format!("secret {id}: {m}"));
    let f = std::fs::File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut raw = Vec::new();
    f.take(MAX_ENV_SECRET + 1)
        .read_to_end(&mut raw)
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    if raw.len() as u64 > MAX_ENV_SECRET {
        return Err(err(format!(
            "larger than {MAX_ENV_SECRET} bytes, too large for an environment variable"
        )));
    }
    let value = String::from_utf8(raw)
        .map_err(|_| err("not UTF-8, so it cannot be an environment variable".into()))?;
    if value.contains('\0') {
        return Err(err(
            "contains a NUL byte, so it cannot be an environment variable".into(),
        ));
    }
    Ok(value)
}

/// Finds (pulling if needed) the image a `FROM` or `--from` names, for a platform.
pub trait ImageSource: Sync {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ImageId, String>;
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub dockerfile: Dockerfile,
    /// The build context directory (`None`: a Dockerfile without context, nothing to COPY).
    pub context: Option<PathBuf>,
    /// `.dockerignore` content.
    pub dockerignore: Option<String>,
    pub options: BuildOptions,
    pub no_cache: bool,
    /// `-t`.
    pub tags: Vec<Reference>,
    /// `--label`: added to the image's labels.
    pub labels: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`: every timestamp the build writes (config, history, layer files
    /// newer than it) is this time, so the same inputs give the same image digest.
    pub source_date_epoch: Option<u64>,
    /// Where the context's file digests are remembered between builds.
    pub hash_cache: Option<PathBuf>,
    /// `--cache-to type=inline`: record each step's cache key in the image's config.
    pub inline_cache: bool,
    /// `--cache-from`: images (pulled if missing) whose inline cache seeds this build's.
    pub cache_from: Vec<String>,
    /// `--secret id=ID,src=FILE`: files RUN `--mount=type=secret` binds read-only (never in a
    /// layer, never in a cache key).
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh ID=SOCKET`: SSH agents RUN `--mount=type=ssh` reaches through a relay (see
    /// [`crate::ssh`]).
    pub ssh: BTreeMap<String, PathBuf>,
    /// Where the keys of this context's and Dockerfile's last build are kept, so a cache miss
    /// names what changed (`--progress plain`).
    pub step_history: Option<PathBuf>,
}

/// What a build reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// Scanning the build context finished.
    Context {
        files: usize,
        hashed: usize,
        elapsed: Duration,
    },
    /// A step starts: `[stage n/total] INSTRUCTION`.
    Step {
        id: usize,
        stage: String,
        index: usize,
        total: usize,
        text: String,
    },
    /// The step was found in the cache.
    Cached {
        id: usize,
    },
    /// Why the step missed the cache (`--progress plain` shows it).
    Miss {
        id: usize,
        reason: String,
    },
    /// Output of a RUN step.
    Output {
        id: usize,
        data: Vec<u8>,
    },
    Done {
        id: usize,
        elapsed: Duration,
    },
    Warning(String),
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    pub image: ImageId,
    pub steps: usize,
    pub cached: usize,
}

/// A stage's state between steps.
struct StageRun {
    state: StageState,
    /// The layer stack: chain ID and the blob descriptor for each diff ID.
    layers: Vec<(ChainId, Descriptor)>,
    key: Digest,
    /// The cache key of each filesystem step so far (for inline cache).
    steps: Vec<InlineStep>,
}

/// One entry of an image's inline cache: after the step with this key, the image's first
/// `layers` layers are the stage's, and the step's history entry was made at `created`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct InlineStep {
    key: Digest,
    layers: usize,
    created: String,
}

/// Where a built image keeps its inline cache (`--cache-to type=inline`): a config field of
/// its own, so `--cache-from` can reuse the image's layers for the steps that made them.
pub const INLINE_CACHE_FIELD: &str = "hull.build.cache.v0";

/// What a filesystem step's key was made of, remembered between builds of one context and
/// Dockerfile so that a miss can say what changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StepRecord {
    key: Digest,
    parent: Digest,
    text: String,
    inputs: String,
}

/// A stage that has been built, as later stages read it.
#[derive(Clone)]
struct BuiltStage {
    config: ImageConfig,
    layers: Vec<(ChainId, Descriptor)>,
    key: Digest,
    steps: Vec<InlineStep>,
}

fn key_of(parts: &[&str]) -> Digest {
    let mut h = Digester::new(Algorithm::Sha256);
    for p in parts {
        h.update(p.len().to_string().as_bytes());
        h.update(b":");
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    h.finish()
}

fn timestamp(epoch: Option<u64>) -> String {
    match epoch {
        Some(s) => jiff::Timestamp::from_second(i64::try_from(s).unwrap_or(i64::MAX))
            .map(|t| t.to_string())
            .unwrap_or_else(|_| jiff::Timestamp::UNIX_EPOCH.to_string()),
        None => jiff::Timestamp::now().to_string(),
    }
}

struct Builder<'a> {
    store: &'a Store,
    req: &'a BuildRequest,
    runner: &'a dyn RunExecutor,
    images: &'a dyn ImageSource,
    /// Stages of one wave build on their own threads: events go through one lock.
    events: Mutex<&'a mut (dyn FnMut(BuildEvent) + Send)>,
    context: Option<Context>,
    lease: Lease,
    built: Mutex<HashMap<usize, BuiltStage>>,
    step_id: AtomicUsize,
    cached: AtomicUsize,
    lexer: Lexer,
    /// The previous build's step records (see [`BuildRequest::step_history`]) and this one's.
    previous: BTreeMap<String, StepRecord>,
    history: Mutex<BTreeMap<String, StepRecord>>,
}

/// Builds `req` into `store`.
pub fn build(
    store: &Store,
    req: &BuildRequest,
    runner: &dyn RunExecutor,
    images: &dyn ImageSource,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<BuildResult, BuildError> {
    let build_args = BuildArgs::new(req.options.build_args.clone());
    let plan = Plan::new(&req.dockerfile, &req.options, &build_args)?;
    let context = match &req.context {
        None => None,
        Some(dir) => {
            let started = Instant::now();
            let ignore = hull_dockerfile::ignore::Matcher::parse(
                req.dockerignore.as_deref().unwrap_or_default(),
            )
            .map_err(|e| BuildError::Context(e.to_string()))?;
            let mut cache = req
                .hash_cache
                .as_deref()
                .map(HashCache::load)
                .unwrap_or_default();
            let c = Context::scan(dir, &ignore, &mut cache)
                .map_err(|e| BuildError::Context(e.to_string()))?;
            if let Some(p) = &req.hash_cache
                && let Err(e) = cache.save(p)
            {
                events(BuildEvent::Warning(format!(
                    "saving the context hash cache {}: {e}",
                    p.display()
                )));
            }
            events(BuildEvent::Context {
                files: c.entries().count(),
                hashed: c.files_hashed,
                elapsed: started.elapsed(),
            });
            Some(c)
        }
    };
    let lease = store
        .metadata()
        .lease(Duration::from_secs(3600))
        .map_err(|e| BuildError::Store(e.to_string()))?;
    let b = Builder {
        store,
        req,
        runner,
        images,
        events: Mutex::new(events),
        context,
        lease,
        built: Mutex::new(HashMap::new()),
        step_id: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        lexer: Lexer::new(req.dockerfile.directives.escape_char()),
        previous: req
            .step_history
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
        history: Mutex::new(BTreeMap::new()),
    };
    for r in &req.cache_from {
        b.import_inline_cache(r, &plan.target_platform)?;
    }
    // Stages whose inputs are built run side by side, one thread each.
    for wave in plan.waves() {
        if let [only] = wave.as_slice() {
            let stage = b.build_stage(&plan, *only, &build_args)?;
            b.lock_built().insert(*only, stage);
            continue;
        }
        let results: Vec<(usize, Result<BuiltStage, BuildError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = wave
                .iter()
                .map(|&i| {
                    let (b, plan, build_args) = (&b, &plan, &build_args);
                    (i, s.spawn(move || b.build_stage(plan, i, build_args)))
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| (i, h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))))
                .collect()
        });
        for (i, r) in results {
            let stage = r?;
            b.lock_built().insert(i, stage);
        }
    }
    if let Some(p) = &req.step_history {
        let steps = std::mem::take(&mut *b.lock_history());
        if let Err(e) = crate::context::write_atomic(p, |w| {
            serde_json::to_writer(w, &steps).map_err(std::io::Error::other)
        }) {
            b.emit(BuildEvent::Warning(format!(
                "saving the build's step keys to {}: {e}",
                p.display()
            )));
        }
    }
    let unused = build_args.unused();
    if !unused.is_empty() {
        b.emit(BuildEvent::Warning(format!(
            "One or more build-args [{}] were not consumed",
            unused.join(" ")
        )));
    }
    let target = b
        .built_stage(plan.target)
        .ok_or_else(|| BuildError::Store("the target stage was not built".into()))?;
    let mut config = target.config;
    if !req.labels.is_empty() {
        let labels = config
            .config
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        labels.extend(req.labels.clone());
    }
    if req.inline_cache {
        let steps =
            serde_json::to_value(&target.steps).map_err(|e| BuildError::Store(e.to_string()))?;
        config.extra.insert(INLINE_CACHE_FIELD.to_string(), steps);
    } else {
        config.extra.remove(INLINE_CACHE_FIELD);
    }
    // The last step's time, as BuildKit does: a fully cached rebuild gives the same image ID.
    config.created = match req.source_date_epoch {
        Some(_) => Some(timestamp(req.source_date_epoch)),
        None => config
            .history
            .last()
            .and_then(|h| h.created.clone())
            .or_else(|| Some(timestamp(None))),
    };
    let image = store
        .commit_image(&config, &target.layers, &req.tags)
        .map_err(|e| BuildError::Store(e.to_string()))?;
    Ok(BuildResult {
        image,
        steps: b.step_id.load(Ordering::Relaxed),
        cached: b.cached.load(Ordering::Relaxed),
    })
}

impl Builder<'_> {
    fn store_err(e: impl std::fmt::Display) -> BuildError {
        BuildError::Store(e.to_string())
    }

    /// Seeds the cache from an image built with an inline cache: each recorded step key maps
    /// to the image's first layers.
    fn import_inline_cache(&self, reference: &str, platform: &Platform) -> Result<(), BuildError> {
        let id = self
            .images
            .resolve(reference, platform)
            .map_err(|e| BuildError::Context(format!("--cache-from {reference}: {e}")))?;
        let img = self.store.image(&id).map_err(Self::store_err)?;
        let Some(v) = img.config.extra.get(INLINE_CACHE_FIELD) else {
            self.emit(BuildEvent::Warning(format!(
                "--cache-from {reference}: the image has no inline cache (build it with --cache-to type=inline)"
            )));
            return Ok(());
        };
        let steps: Vec<InlineStep> = serde_json::from_value(v.clone()).map_err(|e| {
            BuildError::Context(format!(
                "--cache-from {reference}: unreadable inline cache: {e}"
            ))
        })?;
        let now = jiff::Timestamp::now().as_second();
        for st in steps {
            if self
                .store
                .metadata()
                .cache(&st.key)
                .map_err(Self::store_err)?
                .is_some()
            {
                continue;
            }
            let (Some(diffs), Some(chains), Some(descs)) = (
                img.config.rootfs.diff_ids.get(..st.layers),
                img.record.layers.get(..st.layers),
                img.manifest.layers.get(..st.layers),
            ) else {
                continue;
            };
            let config = ImageConfig {
                rootfs: RootFs {
                    fs_type: "layers".into(),
                    diff_ids: diffs.to_vec(),
                },
                history: vec![hull_oci::History {
                    created: Some(st.created.clone()),
                    ..hull_oci::History::default()
                }],
                ..ImageConfig::default()
            };
            let digest = self
                .store
                .content()
                .put_bytes(&config.to_vec())
                .map_err(Self::store_err)?;
            self.store
                .metadata()
                .put_cache(&CacheRecord {
                    key: st.key.clone(),
                    config: digest,
                    layers: chains.to_vec(),
                    blobs: descs.iter().map(|d| d.digest.clone()).collect(),
                    size: 0,
                    created_at: now,
                    last_used: now,
                })
                .map_err(Self::store_err)?;
        }
        Ok(())
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StepRecord>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why a step missed, told from the last build of this context and Dockerfile: the files it
    /// reads that changed, its instruction, or an earlier step.
    fn miss_reason(
        &self,
        step: &str,
        parent: &Digest,
        text: &str,
        inputs: &str,
        key: &Digest,
    ) -> String {
        let Some(prev) = self.previous.get(step) else {
            return "not built before from this context and Dockerfile".into();
        };
        if &prev.key == key {
            return "its cached result was pruned".into();
        }
        if &prev.parent != parent {
            return "an earlier step changed".into();
        }
        if prev.text != text {
            return "the instruction or the variables it uses changed".into();
        }
        let old: BTreeMap<&str, &str> = prev
            .inputs
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .collect();
        let new: BTreeMap<&str, &str> = inputs.lines().filter_map(|l| l.rsplit_once(' ')).collect();
        let mut changed: Vec<String> = Vec::new();
        for (path, d) in &new {
            match old.get(path) {
                None => changed.push(format!("{path} (new)")),
                Some(o) if o != d => changed.push(format!("{path} (changed)")),
                Some(_) => {}
            }
        }
        for path in old.keys() {
            if !new.contains_key(path) {
                changed.push(format!("{path} (gone)"));
            }
        }
        if changed.is_empty() {
            return "its inputs changed".into();
        }
        let more = changed.len().saturating_sub(5);
        changed.truncate(5);
        let mut s = format!("files it reads changed: {}", changed.join(", "));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    }

    fn emit(&self, ev: BuildEvent) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        (events)(ev);
    }

    fn lock_built(&self) -> std::sync::MutexGuard<'_, HashMap<usize, BuiltStage>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn built_stage(&self, i: usize) -> Option<BuiltStage> {
        self.lock_built().get(&i).cloned()
    }

    /// The config and layers a stage starts from, and its first cache key.
    fn base(&self, plan: &Plan, index: usize) -> Result<StageRun, BuildError> {
        let stage = plan
            .stages
            .get(index)
            .ok_or_else(|| BuildError::Store(format!("no stage {index}")))?;
        let (config, layers, key) = match &stage.base {
            Base::Scratch => {
                let p = &stage.platform;
                // BuildKit's empty image: only the default PATH.
                let config = ImageConfig {
                    config: Some(hull_oci::ContainerConfig {
                        env: Some(vec![format!("PATH={}", crate::step::DEFAULT_PATH)]),
                        ..hull_oci::ContainerConfig::default()
                    }),
                    architecture: p.architecture.clone(),
                    os: p.os.clone(),
                    variant: p.variant.clone(),
                    rootfs: RootFs {
                        fs_type: "layers".into(),
                        diff_ids: vec![],
                    },
                    ..ImageConfig::default()
                };
                (
                    config,
                    vec![],
                    key_of(&["scratch", &crate::args::platform_string(p)]),
                )
            }
            Base::Stage(i) => {
                let s = self
                    .built_stage(*i)
                    .ok_or_else(|| BuildError::Store(format!("stage {i} was not built")))?;
                let state = StageState::new(s.config.clone(), self.lexer);
                return Ok(StageRun {
                    state,
                    layers: s.layers.clone(),
                    key: s.key.clone(),
                    steps: s.steps.clone(),
                });
            }
            Base::Image(r) => {
                let id = self
                    .images
                    .resolve(r, &stage.platform)
                    .map_err(|e| BuildError::at(plan_line(&self.req.dockerfile, index), e))?;
                let (mut config, layers) = self.image_layers(&id)?;
                // The base's own inline cache describes the base's build, not this one.
                config.extra.remove(INLINE_CACHE_FIELD);
                (config, layers, key_of(&["image", &id.to_string()]))
            }
        };
        let state = StageState::new(config, self.lexer);
        Ok(StageRun {
            state,
            layers,
            key,
            steps: Vec::new(),
        })
    }

    /// An image's config and its layers with blob descriptors.
    fn image_layers(
        &self,
        id: &ImageId,
    ) -> Result<(ImageConfig, Vec<(ChainId, Descriptor)>), BuildError> {
        let img = self.store.image(id).map_err(Self::store_err)?;
        let layers = img
            .record
            .layers
            .iter()
            .cloned()
            .zip(img.manifest.layers.iter().cloned())
            .collect();
        Ok((img.config, layers))
    }

    fn build_stage(
        &self,
        plan: &Plan,
        index: usize,
        build_args: &BuildArgs,
    ) -> Result<BuiltStage, BuildError> {
        let df = &self.req.dockerfile;
        let stage = df
            .stages
            .get(index)
            .ok_or_else(|| BuildError::Store(format!("no stage {index}")))?;
        let planned = plan
            .stages
            .get(index)
            .ok_or_else(|| BuildError::Store(format!("no stage {index}")))?;
        let name = planned.display_name();
        let mut run = self.base(plan, index)?;
        // The base's ONBUILD triggers run first, as if written right after FROM; the image
        // built here does not inherit them.
        let mut instructions = onbuild_triggers(&mut run.state, stage)?;
        instructions.extend(stage.instructions.iter().cloned());
        let total = instructions.len() + 1;
        let from_id = self.next_step(&name, 1, total, &stage.original);
        self.emit(BuildEvent::Done {
            id: from_id,
            elapsed: Duration::ZERO,
        });
        for (n, ins) in instructions.iter().enumerate() {
            let id = self.next_step(&name, n + 2, total, &ins.original);
            let started = Instant::now();
            let d = run.state.dispatch(ins, &plan.globals, build_args)?;
            if matches!(d.action, Action::None) {
                // Config-only steps are applied fresh every build (as BuildKit's frontend
                // recomputes the config); only filesystem steps are cached.
                let created = self.metadata_time(&run);
                run.state.record(&d, false, &created);
                self.emit(BuildEvent::Done {
                    id,
                    elapsed: started.elapsed(),
                });
                continue;
            }
            let inputs = self.inputs(&d, ins.span.start)?;
            let key = key_of(&[&run.key.to_string(), &d.cache_text, &inputs]);
            let step_id = format!("{name}/{}", n + 2);
            self.lock_history().insert(
                step_id.clone(),
                StepRecord {
                    key: key.clone(),
                    parent: run.key.clone(),
                    text: d.cache_text.clone(),
                    inputs: inputs.clone(),
                },
            );
            let hit = if self.req.no_cache {
                None
            } else {
                self.store
                    .metadata()
                    .use_cache(&key)
                    .map_err(Self::store_err)?
            };
            match hit {
                Some(rec) => {
                    self.apply_cached(&mut run, &d, &rec)?;
                    self.cached.fetch_add(1, Ordering::Relaxed);
                    self.emit(BuildEvent::Cached { id });
                }
                None => {
                    let reason = if self.req.no_cache {
                        "--no-cache".into()
                    } else {
                        self.miss_reason(&step_id, &run.key, &d.cache_text, &inputs, &key)
                    };
                    self.emit(BuildEvent::Miss { id, reason });
                    self.perform(&mut run, &d, id, ins.span.start)?;
                    self.remember(&run, &key)?;
                }
            }
            run.steps.push(InlineStep {
                key: key.clone(),
                layers: run.layers.len(),
                created: run
                    .state
                    .config
                    .history
                    .last()
                    .and_then(|h| h.created.clone())
                    .unwrap_or_default(),
            });
            run.key = key;
            self.emit(BuildEvent::Done {
                id,
                elapsed: started.elapsed(),
            });
        }
        Ok(BuiltStage {
            config: run.state.config,
            layers: run.layers,
            key: run.key,
            steps: run.steps,
        })
    }

    fn next_step(&self, stage: &str, index: usize, total: usize, text: &str) -> usize {
        let id = self.step_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.emit(BuildEvent::Step {
            id,
            stage: stage.to_string(),
            index,
            total,
            text: text.to_string(),
        });
        id
    }

    /// What a step reads, as text for its cache key.
    fn inputs(&self, d: &Dispatched, line: usize) -> Result<String, BuildError> {
        let mut out = String::new();
        match &d.action {
            Action::Copy(c) => match &c.from {
                Some(from) => out.push_str(&format!("from {}", self.source_identity(from, line)?)),
                None => {
                    for s in &c.sources {
                        if let crate::step::CopySource::Path(p) = s {
                            let ctx = self.context_or_err(line)?;
                            for rel in ctx
                                .select(p)
                                .map_err(|e| BuildError::at(line, e.to_string()))?
                            {
                                out.push_str(&format!("{rel} {}\n", ctx.digest(&rel)));
                            }
                        }
                    }
                }
            },
            Action::Run(r) => {
                for m in &r.mounts {
                    if m.kind == MountType::Bind {
                        match &m.from {
                            Some(from) => out.push_str(&format!(
                                "bind from {} {:?}\n",
                                self.source_identity(from, line)?,
                                m.source
                            )),
                            None => {
                                let ctx = self.context_or_err(line)?;
                                let src = m.source.clone().unwrap_or_default();
                                let rel = ctx
                                    .resolve(&src, true)
                                    .map_err(|e| BuildError::at(line, e.to_string()))?;
                                out.push_str(&format!("bind {rel} {}\n", ctx.digest(&rel)));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    fn context_or_err(&self, line: usize) -> Result<&Context, BuildError> {
        self.context.as_ref().ok_or_else(|| {
            BuildError::at(
                line,
                "this step reads the build context, but the build has none",
            )
        })
    }

    /// A `--from` stage's key, or an image's ID.
    fn source_identity(&self, from: &str, line: usize) -> Result<String, BuildError> {
        match self.stage_of(from) {
            Some(i) => self
                .built_stage(i)
                .map(|s| format!("stage {}", s.key))
                .ok_or_else(|| BuildError::at(line, format!("stage {from} was not built"))),
            None => Ok(format!("image {}", self.resolve_from_image(from, line)?)),
        }
    }

    fn stage_of(&self, from: &str) -> Option<usize> {
        let df = &self.req.dockerfile;
        if let Ok(i) = from.parse::<usize>() {
            return (i < df.stages.len()).then_some(i);
        }
        let lower = from.to_ascii_lowercase();
        df.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    fn resolve_from_image(&self, from: &str, line: usize) -> Result<ImageId, BuildError> {
        let platform = self
            .req
            .options
            .platform
            .clone()
            .unwrap_or_else(Platform::host);
        self.images
            .resolve(from, &platform)
            .map_err(|e| BuildError::at(line, e))
    }

    /// Takes a cached step's result: its layers, and its history entry's time.
    fn apply_cached(
        &self,
        run: &mut StageRun,
        d: &Dispatched,
        rec: &CacheRecord,
    ) -> Result<(), BuildError> {
        let bytes = self
            .store
            .content()
            .read_capped(&rec.config, hull_oci::MAX_CONFIG_SIZE)
            .map_err(Self::store_err)?;
        let cached = ImageConfig::from_slice(&bytes).map_err(Self::store_err)?;
        let mut layers = Vec::with_capacity(rec.layers.len());
        for (chain, diff) in rec.layers.iter().zip(cached.rootfs.diff_ids.iter()) {
            layers.push((chain.clone(), self.descriptor_for(diff)?));
        }
        let with_layer = layers.len() > run.layers.len();
        let created = cached
            .history
            .last()
            .and_then(|h| h.created.clone())
            .unwrap_or_else(|| timestamp(self.req.source_date_epoch));
        run.state.config.rootfs.diff_ids = cached.rootfs.diff_ids;
        run.layers = layers;
        run.state.record(d, with_layer, &created);
        Ok(())
    }

    /// The time of a config-only history entry: the stage's latest entry's (so that a rebuild
    /// from cache writes the same config), or `SOURCE_DATE_EPOCH`.
    fn metadata_time(&self, run: &StageRun) -> String {
        if self.req.source_date_epoch.is_some() {
            return timestamp(self.req.source_date_epoch);
        }
        run.state
            .config
            .history
            .last()
            .and_then(|h| h.created.clone())
            .or_else(|| run.state.config.created.clone())
            .unwrap_or_else(|| timestamp(None))
    }

    /// A blob descriptor the store holds for a layer.
    fn descriptor_for(&self, diff: &DiffId) -> Result<Descriptor, BuildError> {
        let blobs = self
            .store
            .metadata()
            .blobs_for_diff(diff)
            .map_err(Self::store_err)?;
        for (digest, mt) in blobs {
            if let Some(size) = self
                .store
                .content()
                .size(&digest)
                .map_err(Self::store_err)?
            {
                return Ok(Descriptor::new(&mt, digest, size));
            }
        }
        Err(BuildError::Store(format!(
            "no blob in the store for layer {diff}"
        )))
    }

    fn remember(&self, run: &StageRun, key: &Digest) -> Result<(), BuildError> {
        let bytes = run.state.config.to_vec();
        let config = self
            .store
            .content()
            .put_bytes(&bytes)
            .map_err(Self::store_err)?;
        let now = jiff::Timestamp::now().as_second();
        self.store
            .metadata()
            .put_cache(&CacheRecord {
                key: key.clone(),
                config,
                layers: run.layers.iter().map(|(c, _)| c.clone()).collect(),
                blobs: run.layers.iter().map(|(_, d)| d.digest.clone()).collect(),
                size: 0,
                created_at: now,
                last_used: now,
            })
            .map_err(Self::store_err)
    }

    /// Performs a step that missed the cache.
    fn perform(
        &self,
        run: &mut StageRun,
        d: &Dispatched,
        id: usize,
        line: usize,
    ) -> Result<(), BuildError> {
        let created = timestamp(self.req.source_date_epoch);
        let with_layer = match &d.action {
            Action::None => false,
            Action::Mkdir { path, user } => {
                let snap = self.snapshot(run)?;
                mkdir_in(&snap.path(), path, user, self.runner)
                    .map_err(|e| BuildError::at(line, e))?;
                self.commit(run, snap)?
            }
            Action::Copy(c) => {
                let snap = self.snapshot(run)?;
                self.copy(c, &snap.path(), line)?;
                self.commit(run, snap)?
            }
            Action::Run(r) => {
                crate::emulation::check(
                    &run.state.config.platform(),
                    &Platform::host(),
                    Path::new(crate::emulation::BINFMT_DIR),
                )
                .map_err(|e| BuildError::at(line, e))?;
                let snap = self.snapshot(run)?;
                // What the mounts point at lives as long as the run.
                let mut held = RunResources::default();
                let mut mounts = self.run_mounts(r, line, &mut held)?;
                // `RUN <<EOF` scripts with a `#!` line, read-only in /dev/pipes.
                let _pipes = if r.pipes.is_empty() {
                    None
                } else {
                    let dir = self.pipes_dir(r, line)?;
                    mounts.push(RunMount::Bind {
                        target: crate::step::PIPES_DIR.to_string(),
                        source: dir.path().to_path_buf(),
                        readonly: true,
                    });
                    Some(dir)
                };
                let mut output = |data: &[u8]| {
                    self.emit(BuildEvent::Output {
                        id,
                        data: data.to_vec(),
                    })
                };
                // Secrets exposed as variables reach this process only: the step as cached
                // and recorded keeps its own environment.
                let with_secrets;
                let step = if held.env.is_empty() {
                    r
                } else {
                    let mut s = r.clone();
                    s.env.extend(std::mem::take(&mut held.env));
                    with_secrets = s;
                    &with_secrets
                };
                let code = self
                    .runner
                    .run(&snap.path(), step, &mounts, &mut output)
                    .map_err(|e| BuildError::at(line, e))?;
                if code != 0 {
                    // The snapshot is dropped: nothing of the failed step is kept.
                    return Err(BuildError::RunFailed {
                        line,
                        command: r.args.join(" "),
                        code,
                    });
                }
                self.commit(run, snap)?
            }
        };
        // A filesystem step that changed nothing is recorded as an empty layer.
        run.state.record(d, with_layer, &created);
        Ok(())
    }

    /// Turns a RUN's `--mount`s into host paths: the context (read-only unless `rw`), a view
    /// of another stage or image, a cache directory kept under the store root between builds,
    /// a tmpfs, or a secret file (read-only; a secret with `env=` also goes into `secret_env`
    /// as `NAME=value`). A secret that was not given is left out unless `required`. SSH agents
    /// are not forwarded yet: a `required` one is an error, another is left out.
    fn run_mounts(
        &self,
        r: &RunStep,
        line: usize,
        held: &mut RunResources,
    ) -> Result<Vec<RunMount>, BuildError> {
        let err = |m: String| BuildError::at(line, m);
        let mut out = Vec::new();
        for m in &r.mounts {
            let target =
                crate::step::join_path(&r.workdir, m.target.as_deref().unwrap_or_default());
            match m.kind {
                MountType::Bind => {
                    let src = m.source.clone().unwrap_or_default();
                    let source = match &m.from {
                        None => {
                            let ctx = self.context_or_err(line)?;
                            let rel = ctx.resolve(&src, true).map_err(|e| err(e.to_string()))?;
                            if m.readonly {
                                ctx.root().join(rel)
                            } else {
                                // Writes to an `rw` bind are discarded (BuildKit mounts a
                                // copy-on-write view): the process gets a copy, never the
                                // user's own directory.
                                let dir = self.scratch_dir("bind-", line)?;
                                let copy = dir.path().join("src");
                                copy_tree(ctx, &rel, &copy).map_err(|e| {
                                    err(format!("copying {src} for an rw bind: {e}"))
                                })?;
                                held.scratch.push(dir);
                                copy
                            }
                        }
                        Some(from) => {
                            let chain = match self.stage_of(from) {
                                Some(i) => self
                                    .built_stage(i)
                                    .and_then(|s| s.layers.last().map(|(c, _)| c.clone())),
                                None => {
                                    let id = self.resolve_from_image(from, line)?;
                                    self.image_layers(&id)?.1.last().map(|(c, _)| c.clone())
                                }
                            };
                            let view = self
                                .store
                                .prepare_snapshot(chain.as_ref())
                                .map_err(Self::store_err)?;
                            let tree =
                                Context::list(&view.path()).map_err(|e| err(e.to_string()))?;
                            let rel = tree.resolve(&src, true).map_err(|e| err(e.to_string()))?;
                            let path = view.path().join(rel);
                            held.views.push(view);
                            path
                        }
                    };
                    out.push(RunMount::Bind {
                        target,
                        source,
                        readonly: m.readonly,
                    });
                }
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir = self
                        .store
                        .root()
                        .join("build")
                        .join("cache-mounts")
                        .join(Digest::sha256_of(id.as_bytes()).hex());
                    if !dir.is_dir() {
                        std::fs::create_dir_all(&dir).map_err(|e| {
                            err(format!("creating cache mount {}: {e}", dir.display()))
                        })?;
                        use std::os::unix::fs::PermissionsExt as _;
                        let mode = m.mode.unwrap_or(0o755);
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                            .map_err(|e| err(format!("cache mount {}: {e}", dir.display())))?;
                        if m.uid.is_some() || m.gid.is_some() {
                            rustix::fs::chown(
                                &dir,
                                m.uid.map(rustix::fs::Uid::from_raw),
                                m.gid.map(rustix::fs::Gid::from_raw),
                            )
                            .map_err(|e| err(format!("cache mount {}: {e}", dir.display())))?;
                        }
                    }
                    out.push(RunMount::Bind {
                        target,
                        source: dir,
                        readonly: m.readonly,
                    });
                }
                MountType::Tmpfs => out.push(RunMount::Tmpfs {
                    target,
                    size: m.size,
                }),
                MountType::Secret => {
                    // id defaults to the target's file name; the target to /run/secrets/<id>.
                    let id = m.id.clone().or_else(|| {
                        m.target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_string)
                    });
                    let Some(id) = id.filter(|i| !i.is_empty()) else {
                        return Err(err("a secret mount needs an id or a target".into()));
                    };
                    let given = self.req.secrets.get(&id);
                    if let (Some(var), Some(path)) = (&m.env, given) {
                        held.env
                            .push(format!("{var}={}", read_secret(&id, path, line)?));
                    }
                    let Some(path) = given else {
                        if m.required {
                            return Err(err(format!(
                                "secret mount {id} is required but was not given (hull build --secret id={id},src=FILE)"
                            )));
                        }
                        continue;
                    };
                    if m.env.is_some() && m.target.is_none() {
                        // Only the variable (BuildKit: a file too when a target is named).
                        continue;
                    }
                    // A copy owned and moded as the mount asks (BuildKit: root, 0400), removed
                    // with the run; the user's file keeps its own owner and mode.
                    let dir = self.scratch_dir("secret-", line)?;
                    let copy = dir.path().join("secret");
                    own_copy(
                        path,
                        &copy,
                        m.uid.unwrap_or(0),
                        m.gid.unwrap_or(0),
                        m.mode.unwrap_or(0o400),
                    )
                    .map_err(|e| err(format!("secret {id}: {e}")))?;
                    held.scratch.push(dir);
                    out.push(RunMount::Bind {
                        target: m
                            .target
                            .as_deref()
                            .map(|t| crate::step::join_path(&r.workdir, t))
                            .unwrap_or_else(|| format!("/run/secrets/{id}")),
                        source: copy,
                        readonly: true,
                    });
                }
                MountType::Ssh => {
                    let id = m.id.clone().unwrap_or_else(|| "default".into());
                    let Some(agent) = self.req.ssh.get(&id) else {
                        if m.required {
                            return Err(err(format!(
                                "ssh mount {id} is required but no agent was given (hull build --ssh {id}[=SOCKET])"
                            )));
                        }
                        continue;
                    };
                    let target = match &m.target {
                        Some(t) => crate::step::join_path(&r.workdir, t),
                        None => format!("/run/buildkit/ssh_agent.{}", held.relays.len()),
                    };
                    let dir = self.scratch_dir("ssh-", line)?;
                    let relay = crate::ssh::AgentRelay::start(
                        agent,
                        &dir.path().join("agent.sock"),
                        m.uid.unwrap_or(0),
                        m.gid.unwrap_or(0),
                        m.mode.unwrap_or(0o600),
                    )
                    .map_err(|e| err(format!("ssh mount {id}: {e}")))?;
                    // The first ssh mount is the process's agent, as in BuildKit.
                    if held.relays.is_empty() {
                        held.env.push(format!("SSH_AUTH_SOCK={target}"));
                    }
                    out.push(RunMount::Bind {
                        target,
                        source: relay.path().to_path_buf(),
                        readonly: false,
                    });
                    held.relays.push(relay);
                    held.scratch.push(dir);
                }
            }
        }
        Ok(out)
    }

    /// A temporary directory under the store root (removed when dropped), mode 0755.
    fn scratch_dir(&self, prefix: &str, line: usize) -> Result<tempfile::TempDir, BuildError> {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = self.store.root().join("build").join("tmp");
        let err = |e: std::io::Error| {
            BuildError::at(
                line,
                format!("making a directory in {}: {e}", parent.display()),
            )
        };
        std::fs::create_dir_all(&parent).map_err(err)?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&parent)
            .map_err(err)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(err)?;
        Ok(dir)
    }

    /// A temporary directory holding a RUN's heredoc scripts (mode 0755).
    fn pipes_dir(&self, r: &RunStep, line: usize) -> Result<tempfile::TempDir, BuildError> {
        use std::os::unix::fs::PermissionsExt as _;
        let err =
            |e: std::io::Error| BuildError::at(line, format!("writing a heredoc script: {e}"));
        let dir = self.scratch_dir("pipes-", line)?;
        for (name, body) in &r.pipes {
            if name.contains('/') || name == ".." || name == "." {
                return Err(BuildError::at(
                    line,
                    format!("invalid heredoc name {name:?}"),
                ));
            }
            let path = dir.path().join(name);
            std::fs::write(&path, body).map_err(err)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
        Ok(dir)
    }

    fn snapshot(&self, run: &StageRun) -> Result<hull_image::Snapshot, BuildError> {
        self.store
            .prepare_snapshot(run.layers.last().map(|(c, _)| c))
            .map_err(Self::store_err)
    }

    /// Commits a snapshot as the stage's next layer; false when it changed nothing.
    fn commit(&self, run: &mut StageRun, snap: hull_image::Snapshot) -> Result<bool, BuildError> {
        let opts = DiffOptions {
            clamp_mtime: self.req.source_date_epoch,
            owners: self.runner.owners(),
        };
        let Some(layer) = self
            .store
            .commit_snapshot(snap, &opts, &self.lease)
            .map_err(Self::store_err)?
        else {
            return Ok(false);
        };
        run.state.config.rootfs.diff_ids.push(layer.diff_id.clone());
        run.layers.push((
            layer.chain_id,
            Descriptor::new(media_type::OCI_LAYER, layer.blob, layer.size),
        ));
        Ok(true)
    }

    fn copy(&self, c: &CopyStep, rootfs: &Path, line: usize) -> Result<(), BuildError> {
        let err = |e: String| BuildError::at(line, e);
        let dest_is_dir = matches!(
            hull_layer::probe_in_root(rootfs, &c.dest).map_err(|e| err(e.to_string()))?,
            Some(hull_layer::PathKind::Dir)
        );
        let (uid, gid) = match &c.chown {
            None => (0, 0),
            Some(owner) => self.runner.resolve_owner(rootfs, owner).map_err(err)?,
        };
        let attrs = CopyAttrs {
            uid,
            gid,
            mode: c
                .chmod
                .as_deref()
                .map(parse_chmod)
                .transpose()
                .map_err(|e| err(e.to_string()))?,
        };
        match &c.from {
            None => {
                let empty;
                let ctx = match &self.context {
                    Some(ctx) => ctx,
                    None if c
                        .sources
                        .iter()
                        .all(|s| matches!(s, crate::step::CopySource::Inline { .. })) =>
                    {
                        empty = Context::list(rootfs).map_err(|e| err(e.to_string()))?;
                        &empty
                    }
                    None => {
                        return Err(err(
                            "this step reads the build context, but the build has none".into(),
                        ));
                    }
                };
                // ADD unpacks local tar archives into the destination directory.
                let (archives, rest) = if c.add && c.unpack != Some(false) {
                    split_archives(ctx, c).map_err(|e| err(e.to_string()))?
                } else {
                    (Vec::new(), None)
                };
                let owner = c.chown.as_ref().map(|_| (uid, gid));
                for a in &archives {
                    crate::copy::extract_into(&ctx.root().join(a), &c.dest, owner, None, rootfs)
                        .map_err(|e| err(e.to_string()))?;
                }
                let plain = match &rest {
                    None => c,
                    Some(r) if r.sources.is_empty() => return Ok(()),
                    Some(r) => r,
                };
                let items = plan_copy(ctx, plain, dest_is_dir).map_err(|e| err(e.to_string()))?;
                copy_into(ctx, &items, &attrs, rootfs).map_err(|e| err(e.to_string()))
            }
            Some(from) => {
                let chain = match self.stage_of(from) {
                    Some(i) => self
                        .built_stage(i)
                        .and_then(|s| s.layers.last().map(|(c, _)| c.clone())),
                    None => {
                        let id = self.resolve_from_image(from, line)?;
                        self.image_layers(&id)?.1.last().map(|(c, _)| c.clone())
                    }
                };
                let view = self
                    .store
                    .prepare_snapshot(chain.as_ref())
                    .map_err(Self::store_err)?;
                let tree = Context::list(&view.path()).map_err(|e| err(e.to_string()))?;
                let items = plan_copy(&tree, c, dest_is_dir).map_err(|e| err(e.to_string()))?;
                copy_into(&tree, &items, &attrs, rootfs).map_err(|e| err(e.to_string()))
            }
        }
    }
}

/// Copies the context's `rel` (a file or a directory tree, as the scan saw it: symlinks as
/// symlinks, modes kept) to `dest`.
fn copy_tree(ctx: &Context, rel: &str, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let one = |from: &str, e: &crate::context::Entry, to: &Path| -> std::io::Result<()> {
        match &e.kind {
            crate::context::EntryKind::Dir => std::fs::create_dir_all(to)?,
            crate::context::EntryKind::File => {
                std::fs::copy(ctx.root().join(from), to)?;
            }
            crate::context::EntryKind::Symlink(t) => std::os::unix::fs::symlink(t, to)?,
        }
        if matches!(e.kind, crate::context::EntryKind::File) {
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(e.mode))?;
        }
        Ok(())
    };
    // Directory modes last, so a read-only directory can be filled first.
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    let Some(top) = ctx.entry(rel) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{rel} is not in the build context"),
        ));
    };
    one(rel, top, dest)?;
    if matches!(top.kind, crate::context::EntryKind::Dir) {
        dirs.push((dest.to_path_buf(), top.mode));
    }
    for (path, e) in ctx.below(rel) {
        let below = path
            .get(rel.len()..)
            .unwrap_or_default()
            .trim_start_matches('/');
        let to = dest.join(below);
        one(path, e, &to)?;
        if matches!(e.kind, crate::context::EntryKind::Dir) {
            dirs.push((to, e.mode));
        }
    }
    for (d, mode) in dirs.iter().rev() {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// ADD's sources that are local tar archives (their context paths), and the step with the
/// others left (`None` when no source is an archive).
fn split_archives(
    ctx: &Context,
    c: &CopyStep,
) -> Result<(Vec<String>, Option<CopyStep>), crate::context::ContextError> {
    let mut archives = Vec::new();
    let mut rest = Vec::new();
    for s in &c.sources {
        let crate::step::CopySource::Path(p) = s else {
            rest.push(s.clone());
            continue;
        };
        let selected = ctx.select(p)?;
        let (found, other): (Vec<String>, Vec<String>) = selected.into_iter().partition(|rel| {
            matches!(
                ctx.entry(rel).map(|e| &e.kind),
                Some(crate::context::EntryKind::File)
            ) && crate::copy::is_archive(&ctx.root().join(rel))
        });
        if found.is_empty() {
            rest.push(s.clone());
            continue;
        }
        archives.extend(found);
        rest.extend(other.into_iter().map(crate::step::CopySource::Path));
    }
    if archives.is_empty() {
        return Ok((archives, None));
    }
    let mut step = c.clone();
    step.sources = rest;
    Ok((archives, Some(step)))
}

/// WORKDIR's directory, created (with its parents) inside the root and owned by the stage's
/// user as Docker does.
fn mkdir_in(rootfs: &Path, path: &str, user: &str, runner: &dyn RunExecutor) -> Result<(), String> {
    if matches!(
        hull_layer::probe_in_root(rootfs, path).map_err(|e| e.to_string())?,
        Some(hull_layer::PathKind::Dir)
    ) {
        return Ok(());
    }
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        runner.resolve_owner(rootfs, user)?
    };
    // A tar of the directories to make, unpacked inside the root. Every directory made is
    // the user's, the missing parents too (BuildKit's `MkdirAllAndChown`).
    let mut tar = tar::Builder::new(Vec::new());
    let mut prefix = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(comp);
        if hull_layer::probe_in_root(rootfs, &prefix)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(
            &mut h,
            format!("{}/", prefix.trim_start_matches('/')),
            std::io::empty(),
        )
        .map_err(|e| e.to_string())?;
    }
    let bytes = tar.into_inner().map_err(|e| e.to_string())?;
    let opts = hull_layer::UnpackOptions::for_current_user(hull_layer::WhiteoutMode::Apply);
    hull_layer::unpack(&bytes[..], rootfs, &opts).map_err(|e| e.to_string())?;
    Ok(())
}

/// Takes the base's `OnBuild` triggers out of the stage's config and parses each as the
/// instruction it names, placed on the stage's `FROM` line (errors point there).
fn onbuild_triggers(
    state: &mut StageState,
    stage: &hull_dockerfile::Stage,
) -> Result<Vec<hull_dockerfile::Instruction>, BuildError> {
    let Some(triggers) = state.config.config.as_mut().and_then(|c| c.on_build.take()) else {
        return Ok(Vec::new());
    };
    let line = stage.span.start;
    let mut out = Vec::with_capacity(triggers.len());
    for t in triggers {
        let bad = |m: String| {
            BuildError::at(
                line,
                format!("invalid ONBUILD trigger {t:?} of the base image: {m}"),
            )
        };
        let df = hull_dockerfile::parse(&format!("FROM scratch\n{t}\n"))
            .map_err(|e| bad(e.to_string()))?;
        let mut found = df
            .stages
            .into_iter()
            .next()
            .map(|s| s.instructions)
            .unwrap_or_default();
        if found.len() != 1 {
            return Err(bad("expected one instruction".into()));
        }
        let Some(mut ins) = found.pop() else {
            continue;
        };
        if matches!(ins.kind, hull_dockerfile::InstructionKind::Onbuild(_)) {
            return Err(bad(
                "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()
            ));
        }
        ins.span = stage.span;
        out.push(ins);
    }
    Ok(out)
}

fn plan_line(df: &Dockerfile, index: usize) -> usize {
    df.stages.get(index).map_or(0, |s| s.span.start)
}
