//! Registries that need credentials: basic auth and the token flow, with `hull login`.

use hull_test::fixtures::{self, FixtureName};
use hull_test::peers;
use hull_test::registry::{RegistryOptions, TestRegistry};

use crate::support::Hull;

fn push_with_creds(reg: &TestRegistry, user: &str, pass: &str) -> String {
    let (layout, tag) = fixtures::layout(FixtureName::Busybox).unwrap();
    let dest = format!("{}/private/busybox:latest", reg.host());
    peers::run(
        peers::skopeo()
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("--dest-creds={user}:{pass}"))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{dest}")),
    )
    .unwrap();
    dest
}

fn login_logout_cycle(reg: &TestRegistry, reference: &str) {
    let hull = Hull::new();
    let err = hull.fails(&["pull", reference]);
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
    assert!(err.contains("hull login"), "a hint names the fix: {err}");

    let err = hull.fails(&["login", "-u", "alice", "-p", "wrong", &reg.host()]);
    assert!(
        err.contains("unauthorized") || err.contains("denied") || err.contains("incorrect"),
        "{err}"
    );
    let out = hull.ok(&["login", "-u", "alice", "-p", "s3cret", &reg.host()]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let config =
        std::fs::read_to_string(hull.dir.path().join("docker-config/config.json")).unwrap();
    assert!(config.contains(&reg.host()), "{config}");
    assert!(
        !config.contains("s3cret"),
        "the password is stored encoded, as docker does"
    );

    let out = hull.output(&["pull", reference]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("s3cret"), "credentials never printed");

    hull.ok(&["logout", &reg.host()]);
    hull.ok(&["rmi", reference]);
    hull.fails(&["pull", reference]);
}

#[test]
fn basic_auth_with_login() {
    hull_test::require_bin!("skopeo", "skopeo");
    let reg = TestRegistry::start_with(RegistryOptions {
        basic_auth: Some(("alice".into(), "s3cret".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let reference = push_with_creds(&reg, "alice", "s3cret");
    login_logout_cycle(&reg, &reference);
}

#[test]
fn token_auth_with_login() {
    hull_test::require_bin!("skopeo", "skopeo");
    let reg = TestRegistry::start_with(RegistryOptions {
        token_auth: Some(("alice".into(), "s3cret".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let reference = push_with_creds(&reg, "alice", "s3cret");
    login_logout_cycle(&reg, &reference);
    assert!(reg.token_requests() > 0, "the token endpoint was used");
}
