//! The Dockerfile builder (layer L4): from a parsed Dockerfile ([`hull_dockerfile`]) and the
//! build's options to images in the store.
//!
//! This crate owns the build's semantics: which stages a target needs and in what order they
//! can run ([`plan`]), how `ARG` values flow from `--build-arg`, global declarations and the
//! automatic platform arguments into each stage ([`args`]), and what the build context holds
//! after `.dockerignore`, hashed file by file ([`context`]), and what each instruction does to
//! the config and history and asks of the filesystem ([`step`]), COPY/ADD ([`copy`]), and the
//! run itself ([`build`]): stages of a wave on their own threads, each filesystem step looked
//! up by its cache key and otherwise performed on a snapshot (overlay, or a copy where overlay is
//! unavailable, e.g. without privilege) and committed as a layer with the owners its processes saw,
//! config-only steps recomputed every build; an inline cache in the image (`--cache-to
//! type=inline`) that `--cache-from` seeds another store's cache with; and each miss explained
//! against the last build of the same context and Dockerfile.
//!
//! Depends on `hull-oci`, `hull-dockerfile`, `hull-layer` (confined unpacking, layer diffs),
//! `hull-image` (the store and its snapshots) and `hull-metadata` (cache records). It does not
//! parse text or start containers: RUN goes through the [`RunExecutor`] trait this crate owns
//! and front ends implement (hull's with `hull-runtime`), so the build's semantics are tested
//! here with a plain chroot executor.
//!
//! Semantics follow BuildKit's Dockerfile frontend. The corpus in the repository's
//! `tests/build/` is built by hull and by `buildah bud` (Debian 12's 1.28) and compared config
//! field by field and file by file; where the two differ, hull does what BuildKit does:
//! - `RUN <<EOF` runs the body as the script (a `#!` body as `/dev/pipes/EOF`), and a command
//!   with heredocs is handed to the shell with its bodies; buildah 1.28 has no heredocs, nor
//!   `COPY --link/--exclude/--parents`, `ADD --unpack` or `RUN --network`.
//! - `ADD --chown` owns the entries of an unpacked archive (BuildKit since v0.23); buildah
//!   keeps the archive's owners.
//! - A directory that a directory COPY creates gets the source directory's mode, then
//!   `--chmod`; buildah makes it 0755.
//! - `EXPOSE 8000-8002` is three ports; buildah keeps the range as one key.
//! - `VOLUME` only changes the config; buildah also creates the directories.
//! - A shell-form `ENTRYPOINT` goes through `SHELL`; buildah always uses `/bin/sh -c`.
//! - With the backtick as escape character (the `escape` directive) a backslash is a plain
//!   character and two backticks inside double quotes are one; buildah 1.28 still unescapes
//!   backslashes there.
//! - Nothing of a `RUN --mount` is left in the image; buildah leaves the parent directories
//!   of mount targets and its own mount points (`/etc/hosts`, `/etc/resolv.conf`, `/run`).
//! - History: `created_by` is BuildKit's (`RUN /bin/sh -c make # buildkit`), not the classic
//!   `/bin/sh -c #(nop) …`.
//!
//! Secrets (`RUN --mount=type=secret`, as a file or with `env=` as a variable) and SSH agents
//! (`RUN --mount=type=ssh`, through [`ssh::AgentRelay`]) reach the step's process only: never a
//! layer, the config, the history or a cache key.
//!
//! Not supported yet: `RUN --security=insecure`, remote `ADD` sources (refused offline), and
//! `--exclude` patterns on the top-level sources of a wildcard COPY are matched against their
//! context paths.

pub mod args;
mod build;
mod change;
pub mod context;
pub mod copy;
pub mod emulation;
mod error;
pub mod plan;
pub mod ssh;
pub mod step;

pub use args::{BuildArgs, StageVars};
pub use build::{
    BuildEvent, BuildRequest, BuildResult, INLINE_CACHE_FIELD, ImageSource, RunExecutor, RunMount,
    build,
};
pub use change::{ChangeError, apply_changes};
pub use error::BuildError;
pub use plan::{Base, BuildOptions, Plan, PlannedStage};
