//! hull as an unprivileged user: the store under the user's own directory, ownership recorded
//! rather than applied, device nodes skipped.

use std::os::unix::fs::PermissionsExt;

use crate::support::{registry, scratch};

#[test]
fn pull_as_unprivileged_user() {
    hull_test::require_root!();
    let (_reg, fx) = registry();
    let home = tempfile::tempdir_in(scratch()).unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut dir = home.path().parent();
    while let Some(d) = dir {
        // Let the unprivileged user reach the scratch directory.
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001)).unwrap();
        }
        dir = d.parent();
    }
    let hull = env!("CARGO_BIN_EXE_hull");
    let run = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(hull)
            .args(args)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("DOCKER_CONFIG", home.path().join("docker"))
            .env_remove("HULL_ROOT")
            .output()
            .unwrap()
    };
    let out = run(&["pull", &fx.multilayer]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        home.path().join("data/hull/metadata.db").exists(),
        "store under XDG_DATA_HOME"
    );
    let out = run(&["system", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
