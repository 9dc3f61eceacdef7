//! The `hull` binary as a user runs it, against real peers the tests start themselves: a CNCF
//! distribution registry filled with fixture images, skopeo, umoci, podman and
//! a private dockerd.

// Modules live in `cli/`; each names its file, since this root is not a `mod.rs`.
// Test helpers outside `#[test]` functions: a failed setup should panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "cli/archive.rs"]
mod archive;
#[path = "cli/auth.rs"]
mod auth;
#[path = "cli/basics.rs"]
mod basics;
#[path = "cli/build.rs"]
mod build;
#[path = "cli/build_corpus.rs"]
mod build_corpus;
#[path = "cli/commands.rs"]
mod commands;
#[path = "cli/crash.rs"]
mod crash;
#[path = "cli/docker.rs"]
mod docker;
#[path = "cli/pull.rs"]
mod pull;
#[path = "cli/push.rs"]
mod push;
#[path = "cli/rootless.rs"]
mod rootless;
#[path = "cli/search.rs"]
mod search;
#[path = "cli/serve.rs"]
mod serve;
#[path = "cli/serve_modes.rs"]
mod serve_modes;
#[path = "cli/support.rs"]
mod support;
