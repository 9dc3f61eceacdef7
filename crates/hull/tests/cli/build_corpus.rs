//! The Dockerfile corpus (`tests/build/` at the repository root): every case is built by
//! `hull build` and checked against its `case.toml` expectations, then built again with
//! `buildah bud` (Debian's, the peer) from the same base image pulled from the same registry;
//! the two images' configs must match field by field and their root filesystems file by file
//! (path, kind, mode, owner, size, content, link target), except for the differences a case
//! documents in its `[differences]` table. A documented difference that no longer differs fails
//! the case too, so the list stays true.
//!
//! A case directory holds the Dockerfile, the context files and `case.toml`:
//! - `description`; `build_args` (table); `target`; `parent` (a Dockerfile built first, tagged,
//!   and given to the case as the build argument `PARENT`);
//! - `symlinks` (table path → target) and `modes` (table path → octal), made in the copied
//!   context, since git keeps neither hostile links nor modes other than 644/755; `archives`
//!   (true: `tree.tar` and its compressed forms are made, see [`make_archives`]);
//! - `error`: the build must fail with this text (buildah must fail too), leave no image and a
//!   store that `hull system check` finds sound;
//! - `[expect]` `absent` (paths), `[expect.files]` (path → content), `[expect.entries]`
//!   (path → `file 644 0:0`, `dir 755 0:0` or `symlink TARGET`), `[expect.config]` (config
//!   field → value, or `"absent"`);
//! - `buildah`: why the peer cannot build this case (then the expectations stand alone);
//! - `[differences]`: `path` or `config.Field` or `history` → why hull and buildah differ.
//!
//! Differences every case shares, and why:
//! - buildah adds the label `io.buildah.version`: left out of the comparison.
//! - buildah's chroot isolation leaves the empty mount points `etc/hosts`, `etc/resolv.conf`
//!   and `run` in every image it ran a step for: left out when hull's image lacks them.
//! - History: buildah writes Docker's classic `created_by` (`/bin/sh -c #(nop) ENV A=b`,
//!   `/bin/sh -c make`), hull writes BuildKit's (`ENV A=b`, `RUN /bin/sh -c make # buildkit`);
//!   the comparison takes each entry's instruction keyword, in order.
//! - buildah 1.28 (Debian 12) predates heredocs, `COPY --link/--exclude/--parents` and
//!   `RUN --network`: those cases say so in `buildah` and are checked by their expectations.
//! - buildah 1.28 ignores `ADD --chown` for unpacked archives; BuildKit applies it since v0.23
//!   and hull does (`add-archives` documents the paths).
//!
//! `HULL_CORPUS=name[,name]` runs only those cases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hull_test::tree::Entry;
use serde_json::Value;

use crate::support::*;

/// Config fields compared with the peer's.
const CONFIG_FIELDS: [&str; 12] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Empty files and directories buildah's chroot isolation makes to mount over when it runs a
/// step, and leaves in the image (BuildKit and hull leave none).
const BUILDAH_MOUNT_POINTS: [&str; 3] = ["etc/hosts", "etc/resolv.conf", "run"];

/// Labels a peer adds to every image it builds.
const PEER_LABELS: [&str; 1] = ["io.buildah.version"];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/build")
}

struct Case {
    name: String,
    dir: PathBuf,
    spec: toml::Table,
}

impl Case {
    fn str(&self, key: &str) -> Option<&str> {
        self.spec.get(key).and_then(|v| v.as_str())
    }

    fn table(&self, key: &str) -> toml::Table {
        self.spec
            .get(key)
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default()
    }

    fn expect(&self, key: &str) -> Option<toml::Value> {
        self.spec
            .get("expect")
            .and_then(|e| e.as_table())
            .and_then(|e| e.get(key))
            .cloned()
    }
}

fn load_cases() -> Vec<Case> {
    let only: Option<Vec<String>> = std::env::var("HULL_CORPUS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut cases = Vec::new();
    for e in std::fs::read_dir(corpus_dir()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().unwrap().is_dir() {
            continue;
        }
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let spec_path = e.path().join("case.toml");
        let text = std::fs::read_to_string(&spec_path)
            .unwrap_or_else(|err| panic!("{}: {err}", spec_path.display()));
        let spec: toml::Table =
            toml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", spec_path.display()));
        assert!(
            spec.get("description").is_some(),
            "{}: no description",
            spec_path.display()
        );
        cases.push(Case {
            name,
            dir: e.path(),
            spec,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// `buildah` with a private store and hull-test's private peer configuration.
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Buildah {
        Buildah {
            dir: tempfile::Builder::new()
                .prefix("buildah")
                .tempdir_in(scratch())
                .unwrap(),
        }
    }

    fn cmd(&self) -> Command {
        hull_test::peers::buildah(self.dir.path())
    }

    fn policy() -> PathBuf {
        hull_test::peers::config_dir().unwrap().join("policy.json")
    }

    /// `buildah bud`: stdout and stderr together, and whether it succeeded.
    fn bud(
        &self,
        ctx: &Path,
        file: &str,
        tag: &str,
        args: &[(String, String)],
        target: Option<&str>,
    ) -> (bool, String) {
        let mut c = self.cmd();
        c.args([
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--format",
            "docker",
        ])
        .arg("--tls-verify=false")
        .arg("--signature-policy")
        .arg(Self::policy())
        .arg("-t")
        .arg(tag)
        .arg("-f")
        .arg(ctx.join(file));
        for (k, v) in args {
            c.arg("--build-arg").arg(format!("{k}={v}"));
        }
        if let Some(t) = target {
            c.arg("--target").arg(t);
        }
        c.arg(ctx);
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn run(&self, args: &[&str]) -> String {
        hull_test::peers::run(self.cmd().args(args)).unwrap()
    }

    /// The image's Docker config (`config` and the top-level fields).
    fn config(&self, image: &str) -> Value {
        let v: Value =
            serde_json::from_str(&self.run(&["inspect", "--type", "image", image])).unwrap();
        v["Docker"].clone()
    }

    fn tree(&self, image: &str) -> BTreeMap<String, Entry> {
        // Named: `buildah from` may print warnings (ONBUILD triggers) on stdout too.
        let ctr = format!(
            "corpus-ctr-{}",
            image.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        self.run(&["from", "--pull=never", "--name", &ctr, image]);
        let mount = self.run(&["mount", &ctr]).trim().to_string();
        let t = hull_test::tree::snapshot(Path::new(&mount)).unwrap();
        self.run(&["umount", &ctr]);
        self.run(&["rm", &ctr]);
        t
    }
}

impl Drop for Buildah {
    /// Removes what buildah made, and unmounts what it left mounted under its root (the
    /// storage's own bind mount, layer mounts of build containers).
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all"]).output();
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        let root = self.dir.path().display().to_string();
        let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&root))
            .map(str::to_string)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).output();
        }
    }
}

/// Copies the case directory (without `case.toml`) to a fresh context and makes what git cannot
/// hold.
fn make_context(case: &Case) -> tempfile::TempDir {
    let ctx = tempfile::Builder::new()
        .prefix(&format!("corpus-{}", case.name))
        .tempdir_in(scratch())
        .unwrap();
    copy_dir(&case.dir, ctx.path());
    std::fs::remove_file(ctx.path().join("case.toml")).unwrap();
    for (path, target) in case.table("symlinks") {
        let p = ctx.path().join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target.as_str().unwrap(), p).unwrap();
    }
    for (path, mode) in case.table("modes") {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = u32::from_str_radix(mode.as_str().unwrap(), 8).unwrap();
        std::fs::set_permissions(
            ctx.path().join(&path),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }
    if case.spec.get("archives").and_then(|v| v.as_bool()) == Some(true) {
        make_archives(ctx.path());
    }
    ctx
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// `tree.tar` and its `.gz`, `.zst`, `.bz2` and `.xz`: `top.txt` (0640), `sub/` (0750),
/// `sub/inner.txt`, `link -> top.txt`, all owned by 1234:2345.
fn make_archives(dir: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(2345);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut h = header(tar::EntryType::Regular, 0o640, 4);
    b.append_data(&mut h, "top.txt", &b"top\n"[..]).unwrap();
    let mut h = header(tar::EntryType::Directory, 0o750, 0);
    b.append_data(&mut h, "sub/", std::io::empty()).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o644, 6);
    b.append_data(&mut h, "sub/inner.txt", &b"inner\n"[..])
        .unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "link", "top.txt").unwrap();
    let tar = b.into_inner().unwrap();
    std::fs::write(dir.join("tree.tar"), &tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    std::fs::write(dir.join("tree.tar.gz"), gz.finish().unwrap()).unwrap();
    let mut zst = Vec::new();
    hull_layer::compress(&tar[..], &mut zst, hull_layer::Compression::Zstd, None).unwrap();
    std::fs::write(dir.join("tree.tar.zst"), zst).unwrap();
    // bzip2 and xz through Debian's tools (bzip2, xz-utils)
    for (tool, ext) in [("bzip2", "bz2"), ("xz", "xz")] {
        let out = Command::new(tool)
            .arg("-c")
            .arg(dir.join("tree.tar"))
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(out.status.success(), "{tool} failed");
        std::fs::write(dir.join(format!("tree.tar.{ext}")), out.stdout).unwrap();
    }
}

/// `null`, `""`, `[]` and `{}` all mean "not set".
fn normalized(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

/// The compared fields of a config: `Config` fields by name, plus `Author`.
fn config_fields(container: &Value, author: Option<&Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in CONFIG_FIELDS {
        let mut v = normalized(container.get(f));
        if f == "Labels"
            && let Value::Object(o) = &mut v
        {
            for l in PEER_LABELS {
                o.remove(l);
            }
            if o.is_empty() {
                v = Value::Null;
            }
        }
        out.insert(format!("config.{f}"), v);
    }
    out.insert("config.Author".into(), normalized(author));
    out
}

/// The instruction keyword of each history entry after the base image's.
fn history_keywords(history: &Value, skip: usize) -> Vec<String> {
    history
        .as_array()
        .map(|h| h.as_slice())
        .unwrap_or_default()
        .iter()
        .skip(skip)
        .map(|h| {
            let by = h["created_by"].as_str().unwrap_or_default();
            // buildah: `/bin/sh -c #(nop) ENV …`, a RUN as its command (`|2 A=1 B=2 …` with
            // build arguments); hull: BuildKit's `ENV …`, `RUN …`.
            let by = match by.strip_prefix("/bin/sh -c #(nop) ") {
                Some(rest) => rest,
                None if by.starts_with("/bin/sh -c ") || by.starts_with('|') => "RUN",
                None => by,
            };
            by.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase()
        })
        .collect()
}

/// `created_by` of each history entry of a hull image, oldest first, as a JSON array of
/// `{"created_by": …}` objects (the shape of a config's `history`).
fn history_created_by(hull: &Hull, image: &str) -> Value {
    let out = hull.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{json .CreatedBy}}",
        image,
    ]);
    let mut rows: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::json!({ "created_by": serde_json::from_str::<Value>(l).unwrap() }))
        .collect();
    rows.reverse();
    Value::Array(rows)
}

fn describe(e: &Entry) -> String {
    match e.kind {
        "symlink" => format!("symlink {}", e.link.clone().unwrap_or_default()),
        kind => format!("{kind} {:o} {}:{}", e.mode, e.uid, e.gid),
    }
}

fn content_of(tree_root: &Path, rel: &str) -> Option<String> {
    std::fs::read(tree_root.join(rel))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Checks the case's expectations against hull's image; returns what failed.
fn check_expectations(
    case: &Case,
    hull: &Hull,
    image: &str,
    config: &Value,
    tree: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(files) = case.expect("files").and_then(|v| v.as_table().cloned()) {
        let mount = hull.ok(&["image", "mount", image]).trim().to_string();
        for (path, want) in files {
            let got = content_of(Path::new(&mount), &path);
            if got.as_deref() != want.as_str() {
                bad.push(format!("{path}: content {got:?}, expected {want:?}"));
            }
        }
        hull.ok(&["image", "umount", image]);
    }
    if let Some(entries) = case.expect("entries").and_then(|v| v.as_table().cloned()) {
        for (path, want) in entries {
            let got = tree.get(&path).map(describe);
            if got.as_deref() != want.as_str() {
                bad.push(format!("{path}: {got:?}, expected {want:?}"));
            }
        }
    }
    if let Some(absent) = case.expect("absent").and_then(|v| v.as_array().cloned()) {
        for p in absent {
            let p = p.as_str().unwrap();
            if tree.contains_key(p) {
                bad.push(format!("{p}: present, expected absent"));
            }
        }
    }
    if let Some(fields) = case.expect("config").and_then(|v| v.as_table().cloned()) {
        for (field, want) in fields {
            let got = normalized(config.get(&field));
            let want = match want.as_str() {
                Some("absent") => Value::Null,
                _ => serde_json::to_value(&want).unwrap(),
            };
            if got != want {
                bad.push(format!("config.{field}: {got}, expected {want}"));
            }
        }
    }
    bad
}

/// Builds one case with hull (and buildah); returns what failed.
fn run_case(case: &Case, hull: &Hull, peer: Option<&Buildah>, base: &str) -> Vec<String> {
    let ctx = make_context(case);
    let c = ctx.path().display().to_string();
    let tag = format!("corpus-{}:latest", case.name);
    let mut args: Vec<(String, String)> = vec![("BASE".into(), base.into())];
    for (k, v) in case.table("build_args") {
        args.push((k, v.as_str().unwrap().to_string()));
    }
    let target = case.str("target");
    let peer = peer.filter(|_| case.str("buildah").is_none());
    let hull_build = |file: &str, tag: &str, args: &[(String, String)]| {
        let mut a: Vec<String> = vec!["build".into(), "-t".into(), tag.into()];
        a.push("-f".into());
        a.push(ctx.path().join(file).display().to_string());
        for (k, v) in args {
            a.push("--build-arg".into());
            a.push(format!("{k}={v}"));
        }
        if let Some(t) = target.filter(|_| file == "Dockerfile") {
            a.push("--target".into());
            a.push(t.into());
        }
        a.push(c.clone());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        hull.output(&refs)
    };

    let mut peer_args = args.clone();
    if let Some(parent) = case.str("parent") {
        let parent_tag = format!("corpus-parent-{}:latest", case.name);
        let out = hull_build(parent, &parent_tag, &args);
        if !out.status.success() {
            return vec![format!(
                "hull build of {parent} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )];
        }
        args.push(("PARENT".into(), parent_tag.clone()));
        if let Some(p) = peer {
            let (ok, text) = p.bud(ctx.path(), parent, &parent_tag, &peer_args, None);
            if !ok {
                return vec![format!("buildah bud of {parent} failed: {text}")];
            }
            peer_args.push(("PARENT".into(), format!("localhost/{parent_tag}")));
        }
    }

    let out = hull_build("Dockerfile", &tag, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(want) = case.str("error") {
        let mut bad = Vec::new();
        if out.status.success() {
            return vec![format!("hull build succeeded, expected the error {want:?}")];
        }
        if !stderr.contains(want) {
            bad.push(format!("hull's error does not say {want:?}:\n{stderr}"));
        }
        if hull.output(&["image", "inspect", &tag]).status.success() {
            bad.push("a failed build left an image".into());
        }
        let check = hull.output(&["system", "check"]);
        let report = String::from_utf8_lossy(&check.stdout).into_owned();
        if !check.status.success() || !report.contains("no problems found") {
            bad.push(format!(
                "the store is not sound after the failure: {report}"
            ));
        }
        if let Some(p) = peer {
            let (ok, _) = p.bud(ctx.path(), "Dockerfile", &tag, &peer_args, target);
            if ok {
                bad.push("buildah built what hull refused".into());
            }
        }
        return bad;
    }
    if !out.status.success() {
        return vec![format!("hull build failed:\n{stderr}")];
    }
    let inspect: Value = serde_json::from_str(&hull.ok(&["inspect", &tag])).unwrap();
    let hull_config = inspect[0]["Config"].clone();
    let hull_tree = mounted_tree(hull, &tag);
    let mut bad = check_expectations(case, hull, &tag, &hull_config, &hull_tree);

    let Some(peer) = peer else {
        return bad;
    };
    let (ok, text) = peer.bud(ctx.path(), "Dockerfile", &tag, &peer_args, target);
    if !ok {
        bad.push(format!("buildah bud failed:\n{text}"));
        return bad;
    }
    let peer_image = format!("localhost/{tag}");
    let peer_doc = peer.config(&peer_image);
    let peer_tree = peer.tree(&peer_image);

    let documented = case.table("differences");
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let ours = config_fields(&hull_config, inspect[0].get("Author"));
    let theirs = config_fields(&peer_doc["config"], peer_doc.get("author"));
    for (k, v) in &ours {
        let w = theirs.get(k).cloned().unwrap_or(Value::Null);
        if *v != w {
            found.insert(k.clone(), format!("hull {v} != buildah {w}"));
        }
    }
    // Mount points buildah's chroot isolation leaves in every image it ran a step for.
    let peer_tree: BTreeMap<String, Entry> = peer_tree
        .into_iter()
        .filter(|(p, e)| {
            !(BUILDAH_MOUNT_POINTS.contains(&p.as_str())
                && !hull_tree.contains_key(p)
                && e.size == 0)
        })
        .collect();
    for line in hull_test::tree::diff("hull", &hull_tree, "buildah", &peer_tree) {
        let path = line.split(": ").next().unwrap_or_default().to_string();
        found.insert(path, line);
    }
    // History: the instruction of each entry after the base image's, in order.
    let hull_history = history_created_by(hull, &tag);
    let base_len = history_created_by(hull, base)
        .as_array()
        .map_or(0, Vec::len);
    let ours = history_keywords(&hull_history, base_len);
    let theirs = history_keywords(&peer_doc["history"], base_len);
    if ours != theirs {
        found.insert(
            "history".into(),
            format!("history: hull {ours:?} != buildah {theirs:?}"),
        );
    }
    for (k, v) in &found {
        if !documented.contains_key(k) {
            bad.push(format!("differs from buildah: {v}"));
        }
    }
    for k in documented.keys() {
        if !found.contains_key(k) {
            bad.push(format!(
                "documented difference {k:?} no longer differs: remove it from case.toml"
            ));
        }
    }
    bad
}

#[test]
fn dockerfile_corpus_matches_buildah() {
    hull_test::require_root!();
    hull_test::require_bin!("buildah", "buildah");
    // the add-archives case compresses its tarball with these
    hull_test::require_bin!("bzip2", "bzip2");
    hull_test::require_bin!("xz", "xz-utils");
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    let peer = Buildah::new();
    let cases = load_cases();
    if std::env::var("HULL_CORPUS").is_err() {
        assert!(
            cases.len() >= 30,
            "the corpus has only {} cases",
            cases.len()
        );
    }
    let mut failures = Vec::new();
    for case in &cases {
        let started = std::time::Instant::now();
        let bad = run_case(case, &hull, Some(&peer), &fx.busybox);
        eprintln!(
            "corpus case {}: {} ({:.1}s)",
            case.name,
            if bad.is_empty() { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        for b in bad {
            failures.push(format!("{}: {b}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
