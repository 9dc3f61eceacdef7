//! Builds driven through the library on a real store: COPY from a context, RUN in a chroot of
//! the step's overlay snapshot (the test executor; the container runtime is the front end's),
//! the cache, multi-stage builds and reproducibility.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use hull_build::plan::BuildOptions;
use hull_build::step::RunStep;
use hull_build::{BuildEvent, BuildRequest, BuildResult, ImageSource, RunExecutor, build};
use hull_image::{ImportOptions, Store};
use hull_oci::{ImageId, Platform, Reference};

/// Runs steps with `chroot` (as root): enough isolation for tests of the build's semantics.
struct Chroot;

static RENDEZVOUS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl RunExecutor for Chroot {
    fn run(
        &self,
        rootfs: &Path,
        step: &RunStep,
        _mounts: &[hull_build::RunMount],
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<i32, String> {
        // `RUN rendezvous …` waits (up to 10 s) until another step runs at the same time: it
        // fails unless independent stages really build side by side.
        if step.args.iter().any(|a| a.contains("rendezvous")) {
            let (lock, cv) = &RENDEZVOUS;
            let mut n = lock.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let (n, timeout) = cv
                .wait_timeout_while(n, std::time::Duration::from_secs(10), |n| *n < 2)
                .unwrap();
            if timeout.timed_out() {
                return Err(format!("ran alone ({} at once)", *n));
            }
        }
        let mut cmd = Command::new("/usr/sbin/chroot");
        cmd.arg(rootfs)
            .args(["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", &step.workdir])
            .args(&step.args)
            .env_clear();
        for e in &step.env {
            let (k, v) = e.split_once('=').unwrap();
            cmd.env(k, v);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        output(&out.stdout);
        output(&out.stderr);
        Ok(out.status.code().unwrap_or(128))
    }

    fn resolve_owner(&self, _rootfs: &Path, owner: &str) -> Result<(u32, u32), String> {
        let (u, g) = owner.split_once(':').unwrap_or((owner, owner));
        Ok((
            u.parse().map_err(|_| format!("unknown user {u}"))?,
            g.parse().map_err(|_| format!("unknown group {g}"))?,
        ))
    }
}

/// Images by name, from the store only.
struct Local<'a>(&'a Store);

impl ImageSource for Local<'_> {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ImageId, String> {
        self.0.resolve(reference).map_err(|e| e.to_string())
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    context: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let layer = hull_test::fixtures::busybox_rootfs_layer(dir.path()).unwrap();
    let f = fs::File::open(layer.path()).unwrap();
    store
        .import(
            Box::new(f),
            ImportOptions {
                reference: Some(Reference::parse("base:latest").unwrap()),
                config: Some(hull_oci::ContainerConfig {
                    cmd: Some(vec!["sh".into()]),
                    env: Some(vec!["PATH=/bin:/usr/bin".into()]),
                    ..Default::default()
                }),
                source: "busybox".into(),
                ..ImportOptions::default()
            },
        )
        .unwrap();
    let context = dir.path().join("ctx");
    fs::create_dir_all(context.join("src")).unwrap();
    fs::write(context.join("src/main.c"), "int main(){}\n").unwrap();
    fs::write(context.join("src/util.c"), "void u(){}\n").unwrap();
    fs::write(context.join("README"), "hello\n").unwrap();
    fs::write(context.join("secret.key"), "nope\n").unwrap();
    Env {
        _dir: dir,
        store,
        context,
    }
}

struct Built {
    result: Result<BuildResult, hull_build::BuildError>,
    events: Vec<BuildEvent>,
}

fn run_build(e: &Env, dockerfile: &str, f: impl FnOnce(&mut BuildRequest)) -> Built {
    let mut req = BuildRequest {
        dockerfile: hull_dockerfile::parse(dockerfile).unwrap(),
        context: Some(e.context.clone()),
        dockerignore: Some("*.key\n".into()),
        options: BuildOptions::default(),
        no_cache: false,
        tags: vec![Reference::parse("built:latest").unwrap()],
        labels: BTreeMap::new(),
        source_date_epoch: None,
        hash_cache: None,
        inline_cache: false,
        cache_from: vec![],
        step_history: Some(e._dir.path().join("step-history.json")),
        secrets: BTreeMap::new(),
        ssh: BTreeMap::new(),
    };
    f(&mut req);
    let events = Mutex::new(Vec::new());
    let result = build(&e.store, &req, &Chroot, &Local(&e.store), &mut |ev| {
        events.lock().unwrap().push(ev)
    });
    Built {
        result,
        events: events.into_inner().unwrap(),
    }
}

fn cached_steps(b: &Built) -> Vec<usize> {
    b.events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Cached { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn output(b: &Built) -> String {
    b.events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Output { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        })
        .collect()
}

/// Reads a file of the built image through a mount.
fn read_in(store: &Store, id: &ImageId, path: &str) -> Option<String> {
    let root = store.mount(id).unwrap();
    let v = fs::read_to_string(root.join(path.trim_start_matches('/'))).ok();
    store.unmount(id).unwrap();
    v
}

const APP: &str = "FROM base\n\
ARG GREETING=hi\n\
WORKDIR /app\n\
COPY src/ ./src/\n\
COPY README .\n\
RUN echo \"$GREETING from $(pwd)\" > out.txt && cat out.txt\n\
ENV MODE=prod\n\
CMD [\"cat\", \"/app/out.txt\"]\n";

#[test]
fn builds_copy_run_and_config_then_rebuilds_from_cache() {
    hull_test::require_root!();
    let e = env();
    let first = run_build(&e, APP, |_| {});
    let r = first.result.as_ref().unwrap();
    assert_eq!(r.cached, 0);
    assert!(
        output(&first).contains("hi from /app"),
        "{}",
        output(&first)
    );
    let img = e.store.image(&r.image).unwrap();
    let c = img.config.config.clone().unwrap();
    assert_eq!(c.cmd.unwrap(), vec!["cat", "/app/out.txt"]);
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert!(c.env.unwrap().contains(&"MODE=prod".to_string()));
    assert_eq!(
        read_in(&e.store, &r.image, "/app/out.txt").unwrap(),
        "hi from /app\n"
    );
    assert_eq!(
        read_in(&e.store, &r.image, "/app/src/main.c").unwrap(),
        "int main(){}\n"
    );
    assert_eq!(
        read_in(&e.store, &r.image, "/app/README").unwrap(),
        "hello\n"
    );
    // history as BuildKit writes it: one layer per WORKDIR/COPY/RUN
    let history: Vec<(String, bool)> = img
        .config
        .history
        .iter()
        .skip(1)
        .map(|h| (h.created_by.clone().unwrap(), h.empty_layer))
        .collect();
    assert_eq!(
        history,
        vec![
            ("ARG GREETING=hi".into(), true),
            ("WORKDIR /app # buildkit".into(), false),
            ("COPY src/ ./src/ # buildkit".into(), false),
            ("COPY README . # buildkit".into(), false),
            (
                "RUN |1 GREETING=hi /bin/sh -c echo \"$GREETING from $(pwd)\" > out.txt && cat out.txt # buildkit".into(),
                false
            ),
            ("ENV MODE=prod".into(), true),
            ("CMD [\"cat\" \"/app/out.txt\"]".into(), true),
        ]
    );
    assert_eq!(img.config.rootfs.diff_ids.len(), 5);
    assert_eq!(e.store.resolve("built:latest").unwrap(), r.image);

    // nothing changed: every step cached, the same image
    let again = run_build(&e, APP, |_| {});
    let r2 = again.result.as_ref().unwrap();
    assert_eq!(cached_steps(&again), vec![3, 4, 5, 6], "{:?}", again.events);
    assert_eq!(r2.image, r.image);
    assert!(output(&again).is_empty());

    // a file only .dockerignore names changes nothing
    fs::write(e.context.join("secret.key"), "other\n").unwrap();
    assert_eq!(run_build(&e, APP, |_| {}).result.unwrap().image, r.image);

    // README changed: the steps before its COPY stay cached
    fs::write(e.context.join("README"), "changed\n").unwrap();
    let third = run_build(&e, APP, |_| {});
    let r3 = third.result.as_ref().unwrap();
    let reasons: Vec<&str> = third
        .events
        .iter()
        .filter_map(|ev| match ev {
            BuildEvent::Miss { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            "files it reads changed: README (changed)",
            "an earlier step changed"
        ],
        "a miss names what changed"
    );
    assert_eq!(cached_steps(&third), vec![3, 4], "WORKDIR, COPY src");
    assert_ne!(r3.image, r.image);
    assert_eq!(
        read_in(&e.store, &r3.image, "/app/README").unwrap(),
        "changed\n"
    );

    // a build argument the RUN uses invalidates from the RUN on
    let fourth = run_build(&e, APP, |req| {
        req.options
            .build_args
            .insert("GREETING".into(), "hello".into());
    });
    let r4 = fourth.result.as_ref().unwrap();
    assert_eq!(cached_steps(&fourth), vec![3, 4, 5], "all but the RUN");
    assert_eq!(
        read_in(&e.store, &r4.image, "/app/out.txt").unwrap(),
        "hello from /app\n"
    );

    // --no-cache runs everything again
    let fifth = run_build(&e, APP, |req| req.no_cache = true);
    assert_eq!(fifth.result.unwrap().cached, 0);
}

#[test]
fn multi_stage_builds_copy_from_earlier_stages_and_skip_unneeded_ones() {
    hull_test::require_root!();
    let e = env();
    let df = "FROM base AS builder\n\
RUN mkdir -p /out && echo built > /out/artifact\n\
FROM base AS unused\n\
RUN exit 1\n\
FROM scratch\n\
COPY --from=builder /out/artifact /artifact\n\
COPY --from=0 /bin/busybox /bin/busybox\n";
    let b = run_build(&e, df, |_| {});
    let r = b.result.unwrap();
    let img = e.store.image(&r.image).unwrap();
    assert_eq!(img.config.rootfs.diff_ids.len(), 2);
    assert_eq!(read_in(&e.store, &r.image, "/artifact").unwrap(), "built\n");
    // --target builds only what it needs
    let t = run_build(&e, df, |req| req.options.target = Some("builder".into()));
    let img = e.store.image(&t.result.unwrap().image).unwrap();
    assert_eq!(img.config.rootfs.diff_ids.len(), 2, "base layer + RUN");
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    hull_test::require_root!();
    let e = env();
    let df = "FROM base\nCOPY . /ctx/\nRUN date > /stamp && touch /ctx/new\n";
    let epoch = |req: &mut BuildRequest| {
        req.source_date_epoch = Some(1_700_000_000);
        req.no_cache = true;
    };
    let a = run_build(&e, df, epoch).result.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = run_build(&e, df, epoch).result.unwrap();
    // `date` prints the time, so the RUN layer differs; everything else must not
    let ia = e.store.image(&a.image).unwrap();
    let ib = e.store.image(&b.image).unwrap();
    assert_eq!(ia.config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(
        ia.config.rootfs.diff_ids[..2],
        ib.config.rootfs.diff_ids[..2]
    );
    let df = "FROM base\nCOPY . /ctx/\nRUN touch /ctx/new && mkdir /made\n";
    let a = run_build(&e, df, epoch).result.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = run_build(&e, df, epoch).result.unwrap();
    assert_eq!(
        a.image, b.image,
        "same inputs, same SOURCE_DATE_EPOCH: same image"
    );
}

#[test]
fn failures_name_the_step_and_keep_nothing() {
    hull_test::require_root!();
    let e = env();
    let b = run_build(
        &e,
        "FROM base\nRUN echo partial > /partial && exit 3\n",
        |_| {},
    );
    let err = b.result.unwrap_err().to_string();
    assert_eq!(
        err,
        "Dockerfile:2: process \"/bin/sh -c echo partial > /partial && exit 3\" did not complete successfully: exit code: 3"
    );
    let b = run_build(&e, "FROM base\nCOPY missing.txt /\n", |_| {});
    assert_eq!(
        b.result.unwrap_err().to_string(),
        "Dockerfile:2: \"/missing.txt\": not found"
    );
    let b = run_build(&e, "FROM base\nCOPY ../outside /\n", |_| {});
    assert_eq!(
        b.result.unwrap_err().to_string(),
        "Dockerfile:2: forbidden path outside the build context: ../outside"
    );
    let b = run_build(&e, "FROM nothere\n", |_| {});
    assert!(
        b.result
            .unwrap_err()
            .to_string()
            .starts_with("Dockerfile:1: ")
    );
    // no snapshot is left behind, and the store checks clean
    let snaps = e.store.root().join("snapshots");
    assert_eq!(fs::read_dir(&snaps).map(|d| d.count()).unwrap_or(0), 0);
    let report = e.store.check(false).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
}

#[test]
fn independent_stages_build_side_by_side() {
    hull_test::require_root!();
    let e = env();
    let df = "FROM base AS left\n\
RUN echo rendezvous left > /left\n\
FROM base AS right\n\
RUN echo rendezvous right > /right\n\
FROM base\n\
COPY --from=left /left /left\n\
COPY --from=right /right /right\n";
    let b = run_build(&e, df, |req| req.no_cache = true);
    let r = b.result.unwrap();
    assert_eq!(
        read_in(&e.store, &r.image, "/left").unwrap(),
        "rendezvous left\n"
    );
    assert_eq!(
        read_in(&e.store, &r.image, "/right").unwrap(),
        "rendezvous right\n"
    );
}

#[test]
fn an_inline_cache_seeds_another_store() {
    hull_test::require_root!();
    let e = env();
    let df = "FROM base\nCOPY src /src\nRUN echo made > /made\nENV X=1\n";
    let built = run_build(&e, df, |req| req.inline_cache = true)
        .result
        .unwrap();
    // a second store that has the image and the same base (as pulls would give them), but no
    // build cache
    let other = env();
    let archive = e._dir.path().join("img.tar");
    let mut f = fs::File::create(&archive).unwrap();
    e.store
        .save(
            &["built:latest".to_string(), "base:latest".to_string()],
            hull_image::ArchiveFormat::OciArchive,
            &mut f,
        )
        .unwrap();
    drop(f);
    other
        .store
        .load(
            Box::new(fs::File::open(&archive).unwrap()),
            hull_image::discard(),
        )
        .unwrap();
    fs::write(other.context.join("src/main.c"), "int main(){}\n").unwrap();
    // (tagged apart: built:latest stays the loaded image with the inline cache)
    let cold = run_build(&other, df, |req| {
        req.tags = vec![Reference::parse("cold:latest").unwrap()]
    });
    assert_eq!(cached_steps(&cold), Vec::<usize>::new());
    // forget what the cold build cached (its layers' times differ from the first store's)
    let keys: Vec<_> = other
        .store
        .metadata()
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    other.store.metadata().delete_cache(&keys).unwrap();
    let warm = run_build(&other, df, |req| {
        req.cache_from = vec!["built:latest".into()]
    });
    assert_eq!(cached_steps(&warm), vec![2, 3], "{:?}", warm.events);
    let id = warm.result.unwrap().image;
    let img = other.store.image(&id).unwrap();
    assert_eq!(
        img.config.rootfs.diff_ids,
        e.store.image(&built.image).unwrap().config.rootfs.diff_ids
    );
    assert!(
        !img.config
            .extra
            .contains_key(hull_build::INLINE_CACHE_FIELD)
    );
}
