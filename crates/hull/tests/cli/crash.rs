//! Crash safety: `hull pull` killed with SIGKILL at random moments leaves a store that
//! `hull system check` accepts, and the next pull completes reusing what was fetched.

use std::time::{Duration, Instant};

use crate::support::{Hull, registry};

#[test]
fn sigkill_during_pull_leaves_a_consistent_store() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    // How long an uninterrupted pull takes here, to spread the kills over it.
    let probe = Hull::new();
    let t = Instant::now();
    probe.ok(&["pull", "-q", &fx.multilayer]);
    let full = t.elapsed().max(Duration::from_millis(200));
    drop(probe);

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut killed = 0;
    let mut rounds = 0;
    // At least 20 kills while the pull is running; a pull that wins the race completed, so the
    // store starts over to keep the next kill meaningful.
    while killed < 20 {
        rounds += 1;
        assert!(
            rounds <= 100,
            "only {killed} of {rounds} pulls were killed mid-way"
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % (full.as_micros() as u64).max(1));
        let mut child = hull
            .cmd()
            .args(["pull", "-q", &fx.multilayer])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(hull.dir.path().join("pull.err")).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        if let Ok(Some(status)) = child.try_wait()
            && !status.success()
        {
            panic!(
                "round {rounds}: the pull failed on its own: {}",
                std::fs::read_to_string(hull.dir.path().join("pull.err")).unwrap()
            );
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = hull.output(&["system", "check"]);
        assert!(
            out.status.success(),
            "round {rounds} (killed after {delay:?}): system check failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if running {
            killed += 1;
        }
        if !running || killed % 5 == 0 {
            // Finishing a pull between kills proves the store is usable; then start over.
            hull.ok(&["pull", "-q", &fx.multilayer]);
            hull.ok(&["rmi", &fx.multilayer]);
            hull.ok(&["image", "prune", "-f"]);
        }
    }
    hull.ok(&["pull", "-q", &fx.multilayer]);
    hull.ok(&["system", "check"]);
}

#[test]
fn interrupted_download_is_resumed() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let mut child = hull
        .cmd()
        .args(["pull", &fx.multilayer])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some partial download exists, then kill.
    let ingest = hull.root().join("content").join("ingest");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial: u64 = walk_sizes(&ingest);
        if partial > 8 * 1024 * 1024 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(walk_sizes(&ingest) > 0, "a partial download was kept");
    let out = hull.output(&["pull", &fx.multilayer]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("Resuming"),
        "the next pull resumes the partial download:\n{all}"
    );
    hull.ok(&["system", "check"]);
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let md = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if md.is_dir() {
                total += walk_sizes(&e.path());
            } else {
                total += md.len();
            }
        }
    }
    total
}
