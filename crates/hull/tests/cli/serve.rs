//! `hull serve` as real clients use it: hull, skopeo, podman, buildah and umoci push to it and
//! pull from it with identical digests and trees; many clients push one blob at once; the
//! server is killed with SIGKILL in the middle of uploads and of `hull push`, and what it serves
//! afterwards is whole.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hull_oci::Digest;
use hull_test::fixtures::{FixtureName, SplitMix64};
use hull_test::{peers, tree};

use crate::support::{
    Hull, Serve, cncf, mounted_tree, raw_manifest, registry, scratch, umoci_unpack,
};

/// The `TAG: digest: sha256:… size: N` line's digest.
fn pushed_digest(stdout: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no summary line for {tag} in {stdout:?}"));
    line.split_once(" size: ").unwrap().0.to_string()
}

/// The platform hull picks by default, as an index names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The digest of the manifest hull pulls for `reference`: the manifest's own, or for an index
/// the host platform's entry.
fn pulled_manifest_digest(reference: &str) -> String {
    let raw = raw_manifest(reference);
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    match v["manifests"].as_array() {
        None => Digest::sha256_of(raw.as_bytes()).to_string(),
        Some(list) => {
            list.iter()
                .find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == host_arch()
                })
                .unwrap_or_else(|| panic!("{reference} has no linux/{} entry: {raw}", host_arch()))
                ["digest"]
                .as_str()
                .unwrap()
                .to_string()
        }
    }
}

fn hex(id: &str) -> &str {
    id.trim().trim_start_matches("sha256:")
}

/// `podman pull` of `reference` into a store of its own; returns the image ID.
fn podman_pull_id(reference: &str) -> String {
    let store = tempfile::tempdir_in(scratch()).unwrap();
    let id = peers::run(peers::podman(store.path()).args([
        "pull",
        "--quiet",
        "--tls-verify=false",
        reference,
    ]))
    .unwrap();
    let inspected = peers::run(
        peers::podman(store.path()).args(["image", "inspect", "--format", "{{.Id}}", reference]),
    )
    .unwrap();
    assert_eq!(hex(&id), hex(&inspected), "{reference}");
    hex(&id).to_string()
}

/// skopeo copies `reference` into an OCI layout (gzip layers, which Debian's umoci reads) and
/// umoci unpacks it: the tree.
fn umoci_tree(reference: &str) -> std::collections::BTreeMap<String, tree::Entry> {
    let work = tempfile::tempdir_in(scratch()).unwrap();
    let layout = work.path().join("layout");
    peers::run(peers::skopeo().args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-compress-format",
        "gzip",
        &format!("docker://{reference}"),
        &format!("oci:{}:t", layout.display()),
    ]))
    .unwrap();
    let root = umoci_unpack(&layout, "t", &work.path().join("bundle"));
    tree::snapshot(&root).unwrap()
}

/// hull pulls a fixture from a CNCF registry and pushes it to `hull serve` and to a second CNCF
/// registry: both hold the manifest hull pulled, byte for byte; podman pulls the same image ID
/// from both; umoci unpacks from `hull serve` the tree hull mounts for the source.
fn round_trip(name: FixtureName) {
    hull_test::require_root!();
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("podman", "podman");
    hull_test::require_bin!("umoci", "umoci");
    let (_reg, fx) = registry();
    let source = fx.get(name);
    let want = pulled_manifest_digest(source);
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let other = cncf();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", source]);
    let id = hull.image_id(source);
    let (repo, tag) = name.repository_tag();
    for host in [serve.host().to_string(), other.host()] {
        let dest = format!("{host}/pushed/{repo}:{tag}");
        hull.ok(&["tag", source, &dest]);
        let out = hull.ok(&["push", &dest]);
        assert_eq!(pushed_digest(&out, tag), want, "{name:?} to {host}");
        assert_eq!(
            Digest::sha256_of(raw_manifest(&dest).as_bytes()).to_string(),
            want,
            "{name:?}: the manifest {host} serves"
        );
        assert_eq!(
            podman_pull_id(&dest),
            hex(&id),
            "{name:?}: podman from {host}"
        );
    }
    let served = format!("{}/pushed/{repo}:{tag}", serve.host());
    let ours = mounted_tree(&hull, source);
    let theirs = umoci_tree(&served);
    let diff = tree::diff("hull (source)", &ours, "umoci (hull serve)", &theirs);
    assert!(
        diff.is_empty(),
        "{name:?}: {} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
    assert!(ours.len() > 10, "suspiciously small tree: {}", ours.len());
}

#[test]
fn busybox_round_trips_through_hull_push_and_serve() {
    round_trip(FixtureName::Busybox);
}

#[test]
fn busybox_oci_round_trips_through_hull_push_and_serve() {
    round_trip(FixtureName::BusyboxOci);
}

#[test]
fn busybox_zstd_round_trips_through_hull_push_and_serve() {
    round_trip(FixtureName::BusyboxZstd);
}

#[test]
fn uncompressed_round_trips_through_hull_push_and_serve() {
    round_trip(FixtureName::Uncompressed);
}

#[test]
fn multilayer_round_trips_through_hull_push_and_serve() {
    round_trip(FixtureName::Multilayer);
}

#[test]
fn multiarch_round_trips_through_hull_push_and_serve() {
    round_trip(FixtureName::Multiarch);
}

#[test]
fn podman_pushes_to_hull_serve_and_pulls_back() {
    hull_test::require_root!();
    hull_test::require_bin!("podman", "podman");
    let (_reg, fx) = registry();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let store = tempfile::tempdir_in(scratch()).unwrap();
    let podman = || peers::podman(store.path());
    peers::run(podman().args(["pull", "--quiet", "--tls-verify=false", &fx.multilayer])).unwrap();
    let dest = format!("{}/podman/multilayer:pushed", serve.host());
    peers::run(podman().args(["tag", &fx.multilayer, &dest])).unwrap();
    peers::run(podman().args(["push", "--quiet", "--tls-verify=false", &dest])).unwrap();
    let id = peers::run(podman().args(["image", "inspect", "--format", "{{.Id}}", &dest])).unwrap();

    assert_eq!(
        podman_pull_id(&dest),
        hex(&id),
        "podman pulls back what it pushed"
    );
    // hull reads it too, to the same image and tree as the source.
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &dest]);
    hull.ok(&["pull", "-q", &fx.multilayer]);
    assert_eq!(hex(&hull.image_id(&dest)), hex(&id));
    let diff = tree::diff(
        "source",
        &mounted_tree(&hull, &fx.multilayer),
        "podman push",
        &mounted_tree(&hull, &dest),
    );
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn buildah_pushes_an_image_hull_pulls() {
    hull_test::require_root!();
    hull_test::require_bin!("buildah", "buildah");
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let work = tempfile::tempdir_in(scratch()).unwrap();
    let b = || peers::buildah(work.path());
    let ctr = peers::run(b().args(["from", "scratch"])).unwrap();
    let ctr = ctr.trim();
    let files = work.path().join("files");
    std::fs::create_dir_all(files.join("bin")).unwrap();
    std::fs::write(files.join("hello.txt"), b"hello from buildah\n").unwrap();
    std::fs::write(files.join("bin/run"), b"#!/bin/sh\necho run\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        files.join("bin/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    peers::run(
        b().args(["copy", ctr])
            .arg(files.join("hello.txt"))
            .arg("/hello.txt"),
    )
    .unwrap();
    peers::run(b().args(["copy", ctr]).arg(files.join("bin")).arg("/bin")).unwrap();
    peers::run(b().args([
        "config",
        "--env",
        "GREETING=hello",
        "--label",
        "org.example.built-by=buildah",
        "--cmd",
        "/bin/run",
        ctr,
    ]))
    .unwrap();
    let image = "localhost/built/by-buildah:v1";
    let id = peers::run(b().args(["commit", "--quiet", ctr, image])).unwrap();
    let dest = format!("{}/built/by-buildah:v1", serve.host());
    peers::run(b().args([
        "push",
        "--quiet",
        "--tls-verify=false",
        image,
        &format!("docker://{dest}"),
    ]))
    .unwrap();

    let hull = Hull::new();
    hull.ok(&["pull", "-q", &dest]);
    assert_eq!(
        hex(&hull.image_id(&dest)),
        hex(&id),
        "the config buildah committed"
    );
    let env = hull.ok(&["inspect", "--format", "{{json .Config.Env}}", &dest]);
    assert!(env.contains("GREETING=hello"), "{env}");
    let labels = hull.ok(&["inspect", "--format", "{{json .Config.Labels}}", &dest]);
    assert!(
        labels.contains("\"org.example.built-by\":\"buildah\""),
        "{labels}"
    );
    let t = mounted_tree(&hull, &dest);
    let hello = t
        .get("hello.txt")
        .unwrap_or_else(|| panic!("no hello.txt in {t:?}"));
    assert_eq!(
        hello.content.as_deref(),
        Some(
            Digest::sha256_of(b"hello from buildah\n")
                .to_string()
                .as_str()
        )
    );
    assert_eq!(t.get("bin/run").map(|e| e.mode), Some(0o755), "{t:?}");
}

// ----------------------------------------------------------------------------- raw HTTP pushes

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn header(resp: &reqwest::blocking::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {resp:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// `len` pseudo-random bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `location` of an upload with `?` or `&` appended, ready for more query parameters.
fn with_query(base: &str, location: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{base}{location}{sep}")
}

/// Starts an upload session in `repo`; returns its location.
fn start_upload(c: &reqwest::blocking::Client, base: &str, repo: &str) -> String {
    let resp = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202, "POST in {repo}");
    header(&resp, "location")
}

/// Sends `chunk` as the bytes from `offset` of the session; returns the next location.
fn patch(
    c: &reqwest::blocking::Client,
    base: &str,
    loc: &str,
    offset: usize,
    chunk: &[u8],
) -> String {
    let resp = c
        .patch(format!("{base}{loc}"))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{offset}-{}", offset + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202, "PATCH {loc}: {:?}", resp.text());
    header(&resp, "location")
}

/// Completes the session with `digest` (and a last chunk, possibly empty).
fn finish(
    c: &reqwest::blocking::Client,
    base: &str,
    loc: &str,
    digest: &Digest,
    last: &[u8],
) -> reqwest::blocking::Response {
    c.put(format!("{}digest={digest}", with_query(base, loc)))
        .header("content-type", "application/octet-stream")
        .body(last.to_vec())
        .send()
        .unwrap()
}

/// GETs a blob and checks it is whole: the right bytes under the right digest.
fn assert_served(c: &reqwest::blocking::Client, base: &str, repo: &str, digest: &Digest) {
    let resp = c
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {digest} from {repo}");
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    let body = resp.bytes().unwrap();
    assert_eq!(
        Digest::sha256_of(&body),
        *digest,
        "{repo} served {} bytes that are not {digest}",
        body.len()
    );
}

/// Files below `dir` (recursively).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Every blob file in the server's storage holds the bytes its name says.
fn assert_stored_blobs_intact(data: &Path) -> usize {
    let blobs = files_under(&data.join("objects/blobs"));
    for f in &blobs {
        let name = f.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(
            Digest::sha256_of(&bytes).hex(),
            name,
            "{} does not hold the blob its name says",
            f.display()
        );
    }
    blobs.len()
}

#[test]
fn fifty_clients_push_the_same_blob_at_once() {
    const CLIENTS: usize = 50;
    const MOUNTS: usize = 10;
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let base = serve.url();
    let blob = Arc::new(random_bytes(50, 8 * 1024 * 1024 + 17));
    let digest = Digest::sha256_of(&blob);
    // A first copy, so that mounts have somewhere to come from while the others push.
    {
        let c = client();
        let loc = start_upload(&c, &base, "same/blob");
        let resp = finish(&c, &base, &loc, &digest, &blob);
        assert_eq!(resp.status(), 201);
    }
    let start = Arc::new(Barrier::new(CLIENTS + MOUNTS));
    let mut handles = Vec::new();
    for i in 0..CLIENTS {
        let (blob, digest, start, base) = (
            Arc::clone(&blob),
            digest.clone(),
            Arc::clone(&start),
            base.clone(),
        );
        handles.push(std::thread::spawn(move || -> String {
            let repo = if i % 2 == 0 {
                "same/blob".to_string()
            } else {
                format!("other/blob-{i}")
            };
            let c = client();
            start.wait();
            let loc = start_upload(&c, &base, &repo);
            let half = blob.len() / 2;
            let resp = match i % 3 {
                // two chunks, empty PUT
                0 => {
                    let loc = patch(&c, &base, &loc, 0, &blob[..half]);
                    let loc = patch(&c, &base, &loc, half, &blob[half..]);
                    finish(&c, &base, &loc, &digest, &[])
                }
                // one chunk, the last one on the PUT
                1 => {
                    let loc = patch(&c, &base, &loc, 0, &blob[..half]);
                    finish(&c, &base, &loc, &digest, &blob[half..])
                }
                // all of it on the PUT
                _ => finish(&c, &base, &loc, &digest, &blob),
            };
            assert_eq!(
                resp.status(),
                201,
                "client {i} in {repo}: {:?}",
                resp.text()
            );
            assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
            repo
        }));
    }
    for i in 0..MOUNTS {
        let (blob, digest, start, base) = (
            Arc::clone(&blob),
            digest.clone(),
            Arc::clone(&start),
            base.clone(),
        );
        handles.push(std::thread::spawn(move || -> String {
            let repo = format!("mounted/m{i}");
            let c = client();
            start.wait();
            let resp = c
                .post(format!(
                    "{base}/v2/{repo}/blobs/uploads/?mount={digest}&from=same/blob"
                ))
                .send()
                .unwrap();
            match resp.status().as_u16() {
                201 => {}
                // a registry may decline a mount with a new session: push it then
                202 => {
                    let loc = header(&resp, "location");
                    let resp = finish(&c, &base, &loc, &digest, &blob);
                    assert_eq!(resp.status(), 201, "mount {i}");
                }
                s => panic!("mount {i}: {s} {:?}", resp.text()),
            }
            repo
        }));
    }
    let repos: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let c = client();
    let mut seen = std::collections::BTreeSet::new();
    for repo in repos {
        if seen.insert(repo.clone()) {
            assert_served(&c, &base, &repo, &digest);
        }
    }
    assert_eq!(seen.len(), 1 + CLIENTS / 2 + MOUNTS);
    // One stored copy, no session or temp file left over.
    assert_eq!(assert_stored_blobs_intact(data.path()), 1);
    let uploads = files_under(&data.path().join("uploads"));
    assert!(uploads.is_empty(), "upload files left: {uploads:?}");
    let temps = files_under(&data.path().join("tmp"));
    assert!(temps.is_empty(), "temp files left: {temps:?}");
    // Sessions are gone too, not only their files.
    let sessions: Vec<_> = files_under(&data.path().join("objects/repositories"))
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "_uploads"))
        .collect();
    assert!(sessions.is_empty(), "session markers left: {sessions:?}");
}

/// The size an upload session holds, from its status (`Range: 0-N`).
fn session_size(c: &reqwest::blocking::Client, base: &str, loc: &str) -> usize {
    let resp = c.get(format!("{base}{loc}")).send().unwrap();
    assert_eq!(resp.status(), 204, "status of {loc}: {:?}", resp.text());
    let range = header(&resp, "range");
    let end: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
    // distribution's form: `0-0` for an empty session too
    if end == 0 { 0 } else { end + 1 }
}

#[test]
fn upload_resumes_after_the_server_is_killed() {
    const MIB: usize = 1024 * 1024;
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let blob = random_bytes(9, 24 * MIB + 5);
    let digest = Digest::sha256_of(&blob);
    let c = client();

    // Killed between chunks: the session holds exactly the acknowledged chunks.
    let mut serve = Serve::start(data.path());
    let loc = start_upload(&c, &serve.url(), "killed/between");
    let mut loc_now = loc.clone();
    for i in 0..3 {
        loc_now = patch(
            &c,
            &serve.url(),
            &loc_now,
            i * MIB,
            &blob[i * MIB..(i + 1) * MIB],
        );
    }
    serve.kill();
    let serve = Serve::start(data.path());
    let base = serve.url();
    assert_eq!(session_size(&c, &base, &loc), 3 * MIB);
    let loc_now = patch(&c, &base, &loc_now, 3 * MIB, &blob[3 * MIB..10 * MIB]);
    let resp = finish(&c, &base, &loc_now, &digest, &blob[10 * MIB..]);
    assert_eq!(resp.status(), 201, "{:?}", resp.text());
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    assert_served(&c, &base, "killed/between", &digest);
    drop(serve);

    // Killed while a chunk is on the wire: the session resumes from an offset between what was
    // acknowledged and what was sent, holding the blob's bytes up to there.
    let blob = random_bytes(10, 24 * MIB + 7);
    let digest = Digest::sha256_of(&blob);
    let mut serve = Serve::start(data.path());
    let loc = start_upload(&c, &serve.url(), "killed/during");
    let loc_now = patch(&c, &serve.url(), &loc, 0, &blob[..2 * MIB]);
    let chunk = &blob[2 * MIB..20 * MIB];
    let sent = 9 * MIB;
    let mut conn = std::net::TcpStream::connect(serve.host()).unwrap();
    write!(
        conn,
        "PATCH {loc_now} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nContent-Range: {}-{}\r\n\r\n",
        serve.host(),
        chunk.len(),
        2 * MIB,
        20 * MIB - 1
    )
    .unwrap();
    conn.write_all(&chunk[..sent]).unwrap();
    conn.flush().unwrap();
    // Wait until the server has written some of it, then kill it mid-body.
    let upload_files = || files_under(&data.path().join("uploads"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while upload_files()
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum::<u64>()
        <= (2 * MIB) as u64
    {
        assert!(
            Instant::now() < deadline,
            "the server wrote none of the chunk"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    serve.kill();
    drop(conn);
    let serve = Serve::start(data.path());
    let base = serve.url();
    let held = session_size(&c, &base, &loc);
    assert!(
        (2 * MIB..=2 * MIB + sent).contains(&held),
        "the session holds {held} bytes after a kill mid-chunk (acknowledged {}, sent {})",
        2 * MIB,
        2 * MIB + sent
    );
    let loc_now = patch(&c, &base, &loc, held, &blob[held..20 * MIB]);
    let resp = finish(&c, &base, &loc_now, &digest, &blob[20 * MIB..]);
    assert_eq!(resp.status(), 201, "{:?}", resp.text());
    assert_served(&c, &base, "killed/during", &digest);
    assert_stored_blobs_intact(data.path());
}

#[test]
fn hull_push_survives_repeated_server_kills() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &fx.multilayer]);
    let want = pulled_manifest_digest(&fx.multilayer);

    // How long an uninterrupted push takes, to spread the kills over it.
    let probe_data = tempfile::tempdir_in(scratch()).unwrap();
    let probe = Serve::start(probe_data.path());
    let probe_dest = format!("{}/probe/multilayer:v1", probe.host());
    hull.ok(&["tag", &fx.multilayer, &probe_dest]);
    let t = Instant::now();
    hull.ok(&["push", "-q", &probe_dest]);
    let full = t.elapsed().max(Duration::from_millis(300));
    drop(probe);

    let data = tempfile::tempdir_in(scratch()).unwrap();
    let mut serve = Serve::start(data.path());
    let addr = serve.host().to_string();
    let dest = format!("{addr}/killed/multilayer:v1");
    hull.ok(&["tag", &fx.multilayer, &dest]);
    let err_log = hull.dir.path().join("push.err");
    let mut seed = SplitMix64::new(0x5eed);
    let (mut killed, mut rounds) = (0, 0);
    // Each round kills the server up to twice while a push runs and starts it again on the same
    // address and data a moment later: the push retries, resumes its upload sessions and
    // completes by itself.
    while killed < 8 {
        rounds += 1;
        assert!(
            rounds <= 40,
            "only {killed} of {rounds} pushes were killed mid-way"
        );
        let mut push = hull
            .cmd()
            .args(["push", &dest])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_log).unwrap())
            .spawn()
            .unwrap();
        let mut kills_now = 0;
        for _ in 0..2 {
            let delay = Duration::from_micros(seed.next_u64() % (full.as_micros() as u64).max(1));
            std::thread::sleep(delay);
            if push.try_wait().unwrap().is_some() {
                break;
            }
            serve.kill();
            killed += 1;
            kills_now += 1;
            std::thread::sleep(Duration::from_millis(seed.next_u64() % 300));
            serve = Serve::start_at(data.path(), &addr);
            // Whatever a killed server left, it serves only whole blobs.
            assert_stored_blobs_intact(data.path());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = push.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = push.kill();
                panic!("round {rounds}: hull push still runs after 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "round {rounds}: the push did not recover from {kills_now} server kills: {}",
            std::fs::read_to_string(&err_log).unwrap()
        );
        if kills_now == 0 || rounds % 3 == 0 {
            // Start over with an empty registry, so that the next kills interrupt uploads
            // again rather than a push that finds every layer there.
            serve.kill();
            std::fs::remove_dir_all(data.path()).unwrap();
            std::fs::create_dir_all(data.path()).unwrap();
            serve = Serve::start_at(data.path(), &addr);
        }
    }

    let out = hull.ok(&["push", &dest]);
    assert_eq!(pushed_digest(&out, "v1"), want);
    let raw = raw_manifest(&dest);
    assert_eq!(Digest::sha256_of(raw.as_bytes()).to_string(), want);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let c = client();
    let blobs: Vec<Digest> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(blobs.len() >= 3, "{raw}");
    for d in &blobs {
        assert_served(&c, &serve.url(), "killed/multilayer", d);
    }
    assert!(assert_stored_blobs_intact(data.path()) >= blobs.len());
    // And a peer reads the whole image.
    let layout = tempfile::tempdir_in(scratch()).unwrap();
    peers::run(peers::skopeo().args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:v1", layout.path().display()),
    ]))
    .unwrap();
}
