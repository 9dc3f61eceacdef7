//! The Dockerfile builder (layer L4): from a parsed Dockerfile ([`hull_dockerfile`]) and the
//! build's options to images in the store.
//!
//! This crate owns the build's semantics: which stages a target needs and in what order they
//! can run ([`plan`]), how `ARG` values flow from `--build-arg`, global declarations and the
//! automatic platform arguments into each stage ([`args`]), and what the build context holds
//! after `.dockerignore`, hashed file by file ([`context`]), and what each instruction does to
//! the config and history and asks of the filesystem ([`step`]).
//!
//! Depends on `hull-oci` (platforms) and `hull-dockerfile` (the syntax tree). It does not parse
//! text or run containers: the parser and the runtime are other crates' jobs.

pub mod args;
mod build;
pub mod context;
pub mod copy;
mod error;
pub mod plan;
pub mod step;

pub use args::{BuildArgs, StageVars};
pub use build::{BuildEvent, BuildRequest, BuildResult, ImageSource, RunExecutor, RunMount, build};
pub use error::BuildError;
pub use plan::{Base, BuildOptions, Plan, PlannedStage};
