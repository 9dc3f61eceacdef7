//! `/v1/search`: Docker Hub's answer shape, matching, paging, auth filtering, the repository
//! information API, and hull's search client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hull_distribution::{ClientConfig, RegistryClient, credentials};
use hull_registry::names::RepoName;
use hull_registry::search::{self, RepoInfoUpdate, SearchError};
use hull_registry::{AccessRule, FsStorage, Htpasswd, Registry, TokenAuth, TokenConfig};

use crate::support::*;

fn set_info(data: &Path, name: &str, description: &str, official: bool, stars: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let storage = FsStorage::open(data).await.unwrap();
        search::set_repo_info(
            &storage,
            &RepoName::parse(name).unwrap(),
            RepoInfoUpdate {
                description: Some(description.into()),
                is_official: Some(official),
                star_count: Some(stars),
            },
        )
        .await
        .unwrap();
    });
}

fn search_json(base: &str, query: &str, token: Option<&str>) -> serde_json::Value {
    let mut req = client().get(format!("{base}/v1/search?{query}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    assert_eq!(resp.status(), 200, "search {query}");
    resp.json().unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

/// Pushes one small image to each repository.
fn fill(base: &str, repos: &[&str]) {
    for r in repos {
        push_image(base, r, "v1", r);
    }
}

#[test]
fn search_matches_names_and_descriptions_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    fill(
        &base,
        &[
            "lab/busybox",
            "lab/alpine",
            "tools/box-utils",
            "web/nginx",
            "web/app",
        ],
    );
    set_info(
        dir.path(),
        "lab/busybox",
        "The Swiss Army knife of embedded Linux",
        true,
        10,
    );
    set_info(
        dir.path(),
        "web/nginx",
        "HTTP server and reverse PROXY",
        false,
        30,
    );
    set_info(dir.path(), "web/app", "Our shop, behind a proxy", false, 2);

    let v = search_json(&base, "q=box", None);
    assert_eq!(v["query"], "box");
    assert_eq!(v["num_results"], 2);
    assert_eq!(v["page"], 1);
    assert_eq!(v["page_size"], 25);
    assert_eq!(v["num_pages"], 1);
    // Stars first, then names.
    assert_eq!(names(&v), vec!["lab/busybox", "tools/box-utils"]);
    assert_eq!(
        v["results"][0],
        serde_json::json!({
            "name": "lab/busybox",
            "description": "The Swiss Army knife of embedded Linux",
            "star_count": 10,
            "is_official": true,
            "is_automated": false,
        })
    );
    // Descriptions match too, case-insensitively.
    assert_eq!(
        names(&search_json(&base, "q=Proxy", None)),
        vec!["web/nginx", "web/app"]
    );
    assert_eq!(
        names(&search_json(&base, "q=SWISS", None)),
        vec!["lab/busybox"]
    );
    assert_eq!(
        search_json(&base, "q=nothing-like-this", None)["num_results"],
        0
    );

    // Pages of two over the five repositories an empty query matches.
    let p1 = search_json(&base, "q=&n=2", None);
    assert_eq!(
        (p1["num_results"].as_u64(), p1["num_pages"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(names(&p1), vec!["web/nginx", "lab/busybox"]);
    let p2 = search_json(&base, "q=&n=2&page=2", None);
    assert_eq!(names(&p2), vec!["web/app", "lab/alpine"]);
    let p3 = search_json(&base, "q=&n=2&page=3", None);
    assert_eq!(names(&p3), vec!["tools/box-utils"]);
    assert!(names(&search_json(&base, "q=&n=2&page=4", None)).is_empty());
    assert_eq!(search_json(&base, "q=x&n=100", None)["page_size"], 100);

    for bad in ["q=x&n=0", "q=x&n=101", "q=x&n=ten", "q=x&page=0"] {
        let resp = client()
            .get(format!("{base}/v1/search?{bad}"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(error_code(resp), "PAGINATION_NUMBER_INVALID", "{bad}");
    }
}

#[test]
fn repository_information_is_kept_beside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    fill(&server.url(), &["lab/app"]);
    drop(server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let storage = FsStorage::open(dir.path()).await.unwrap();
        let name = RepoName::parse("lab/app").unwrap();
        assert_eq!(
            search::repo_info(&storage, &name).await.unwrap(),
            Default::default()
        );
        let info = search::set_repo_info(
            &storage,
            &name,
            RepoInfoUpdate {
                description: Some("an app".into()),
                ..RepoInfoUpdate::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(info.description, "an app");
        let info = search::set_repo_info(
            &storage,
            &name,
            RepoInfoUpdate {
                is_official: Some(true),
                ..RepoInfoUpdate::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            (info.description.as_str(), info.is_official),
            ("an app", true)
        );
        assert_eq!(search::repo_info(&storage, &name).await.unwrap(), info);
        let missing = RepoName::parse("lab/nope").unwrap();
        let e = search::set_repo_info(&storage, &missing, RepoInfoUpdate::default())
            .await
            .unwrap_err();
        assert!(matches!(e, SearchError::UnknownRepository(_)));
        assert_eq!(e.to_string(), "repository lab/nope does not exist");
    });
    assert!(
        dir.path()
            .join("objects/repositories/lab/app/_info.json")
            .is_file()
    );
}

fn token_server(dir: &Path) -> TestServer {
    let users = htpasswd_text(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let rule = |account: &str, repository: &str, actions: &[&str]| AccessRule {
        account: account.into(),
        kind: "repository".into(),
        repository: repository.into(),
        actions: actions.iter().map(|a| (*a).to_string()).collect(),
    };
    let config = TokenConfig {
        access: vec![
            rule("alice", "*", &["*"]),
            rule("bob", "bob/*", &["pull", "push"]),
            rule("", "public/*", &["pull"]),
        ],
        ..TokenConfig::default()
    };
    TestServer::start_custom(dir, move |storage| async move {
        let token = TokenAuth::new(
            config,
            Htpasswd::parse(&users).unwrap(),
            Arc::clone(&storage),
        )
        .await
        .unwrap();
        Registry::builder(storage).token_auth(Some(token)).build()
    })
}

#[test]
fn search_lists_only_what_the_caller_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    // Fill without auth, then serve the same data with token auth.
    let open = TestServer::start(dir.path());
    fill(&open.url(), &["public/app", "bob/app", "secret/app"]);
    drop(open);
    let server = token_server(dir.path());
    let base = server.url();

    let resp = client()
        .get(format!("{base}/v1/search?q=app"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        header(&resp, "www-authenticate")
            .unwrap()
            .contains("scope=\"registry:catalog:search\"")
    );
    let anon = fetch_token(&base, None, &["registry:catalog:search"]);
    assert_eq!(
        names(&search_json(&base, "q=app", Some(&anon))),
        vec!["public/app"]
    );
    let bob = fetch_token(&base, Some(("bob", "bob-pw")), &["registry:catalog:search"]);
    assert_eq!(
        names(&search_json(&base, "q=app", Some(&bob))),
        vec!["bob/app", "public/app"]
    );
    let alice = fetch_token(&base, Some(("alice", "alice-pw")), &[]);
    assert_eq!(
        names(&search_json(&base, "q=app", Some(&alice))),
        vec!["bob/app", "public/app", "secret/app"]
    );
}

#[test]
fn hull_search_client_uses_the_pull_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let open = TestServer::start(dir.path());
    fill(&open.url(), &["public/tool", "bob/tool", "secret/tool"]);
    drop(open);
    set_info(dir.path(), "public/tool", "a public tool", true, 5);
    let server = token_server(dir.path());
    let host = server.host();
    let config_dir = tempfile::tempdir().unwrap();
    let cfg = ClientConfig {
        docker_config_dir: Some(config_dir.path().to_path_buf()),
        retry_base_delay: Duration::from_millis(10),
        max_retries: 2,
        ..ClientConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Anonymous: what anyone may pull.
        let anon = RegistryClient::new(cfg.clone()).unwrap();
        let r = hull_distribution::search::search(&anon, &host, "tool", 10)
            .await
            .unwrap();
        assert_eq!(r.num_results, 1);
        assert_eq!(r.results[0].name, "public/tool");
        assert_eq!(r.results[0].description, "a public tool");
        assert!(r.results[0].is_official);
        // With bob's stored credentials: his repositories too.
        credentials::store(
            config_dir.path(),
            &host,
            &credentials::Credential::new("bob", "bob-pw"),
        )
        .unwrap();
        let bob = RegistryClient::new(cfg.clone()).unwrap();
        let r = hull_distribution::search::search(&bob, &host, "tool", 1)
            .await
            .unwrap();
        assert_eq!((r.num_results, r.page_size, r.num_pages), (2, 1, 2));
        assert_eq!(r.results.len(), 1);
        // Out-of-range limits are the registry's error.
        let e = hull_distribution::search::search(&bob, &host, "tool", 1000)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("n must be"), "{e}");
    });
}
