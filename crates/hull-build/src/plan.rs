//! The stage graph: each stage's base (another stage, an image, or `scratch`) and platform
//! resolved with the global arguments, the stages each one reads (`FROM`, `COPY --from`,
//! `RUN --mount=from=`, which the parser has already refused to take from a variable), the target's closure, and an order that builds each stage after what
//! it reads, in waves of stages that can run side by side.
//!
//! As BuildKit does: `FROM` names only stages defined above it (any other name is an image),
//! while `--from` may name any stage, or a stage's index (`0`, `1`), or else an image; a cycle
//! is an error naming a stage on it. `--from` values are expanded with the global arguments and
//! the stage's own `ARG`/`ENV` declarations above the instruction (the base image's `Env` is not
//! known yet when the graph is drawn; BuildKit draws it at the same point).

use std::collections::{BTreeMap, BTreeSet};

use hull_dockerfile::{Dockerfile, InstructionKind, Lexer, Mount};
use hull_oci::Platform;

use crate::args::{BuildArgs, GlobalArgs, StageVars, platform_args};
use crate::error::BuildError;

/// What a build is asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name (or index); default the last stage.
    pub target: Option<String>,
    /// `--platform`: the target platform; default the build platform.
    pub platform: Option<Platform>,
    /// The platform the build runs on (default: the host's).
    pub build_platform: Option<Platform>,
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and config.
    Scratch,
    /// `FROM <earlier stage>`.
    Stage(usize),
    /// An image reference (expanded, not yet normalised).
    Image(String),
}

/// A stage with what it needs resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    /// The platform its base is pulled for and its RUN steps run as.
    pub platform: Platform,
    /// Stages it reads (its base included).
    pub deps: BTreeSet<usize>,
    /// Images it reads with `COPY --from` or `RUN --mount=from=` (its base excluded).
    pub images: BTreeSet<String>,
}

impl PlannedStage {
    /// The name used in progress output and errors: the `AS` name, or the index.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// The build's stages and the order to build them in.
#[derive(Debug)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    /// The stage whose result is the build's image.
    pub target: usize,
    /// Stages the target needs (itself included), dependencies first.
    pub order: Vec<usize>,
    /// The global scope (platform arguments and global `ARG`s).
    pub globals: GlobalArgs,
    pub build_platform: Platform,
    pub target_platform: Platform,
}

impl Plan {
    /// Resolves `df`'s stages for `opts`. Marks the build arguments used by global and stage
    /// declarations in `build_args` as consumed.
    pub fn new(
        df: &Dockerfile,
        opts: &BuildOptions,
        build_args: &BuildArgs,
    ) -> Result<Plan, BuildError> {
        let lexer = Lexer::new(df.directives.escape_char());
        let build_platform = opts.build_platform.clone().unwrap_or_else(Platform::host);
        let target_platform = opts
            .platform
            .clone()
            .unwrap_or_else(|| build_platform.clone());
        let auto = platform_args(&build_platform, &target_platform);
        let mut globals = GlobalArgs::new(&auto);
        for i in &df.global_args {
            if let InstructionKind::Arg(decls) = &i.kind {
                for d in decls {
                    globals
                        .declare(d, build_args, &lexer)
                        .map_err(|e| BuildError::at(i.span.start, e.to_string()))?;
                }
            }
        }

        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut stages = Vec::with_capacity(df.stages.len());
        for (index, st) in df.stages.iter().enumerate() {
            let line = st.span.start;
            let base_name = lexer
                .expand(&st.base, globals.vars())
                .map_err(|e| BuildError::at(line, e.to_string()))?;
            if base_name.is_empty() {
                return Err(BuildError::at(
                    line,
                    format!("base name ({}) should not be blank", st.base),
                ));
            }
            let base = if base_name.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if let Some(&i) = names.get(&base_name.to_ascii_lowercase()) {
                Base::Stage(i)
            } else {
                Base::Image(base_name)
            };
            let platform = match &st.platform {
                None => match &base {
                    Base::Stage(i) => stages.get(*i).map_or_else(
                        || target_platform.clone(),
                        |s: &PlannedStage| s.platform.clone(),
                    ),
                    _ => target_platform.clone(),
                },
                Some(p) => {
                    let text = lexer
                        .expand(p, globals.vars())
                        .map_err(|e| BuildError::at(line, e.to_string()))?;
                    text.parse::<Platform>().map_err(|e| {
                        BuildError::at(line, format!("failed to parse platform {text}: {e}"))
                    })?
                }
            };
            if let Some(n) = &st.name {
                if names.insert(n.clone(), index).is_some() {
                    return Err(BuildError::at(line, format!("duplicate stage name {n:?}")));
                }
            }
            let mut deps = BTreeSet::new();
            if let Base::Stage(i) = base {
                deps.insert(i);
            }
            stages.push(PlannedStage {
                index,
                name: st.name.clone(),
                base,
                platform,
                deps,
                images: BTreeSet::new(),
            });
        }

        // What each stage reads with --from, now that every stage has its name.
        for (index, st) in df.stages.iter().enumerate() {
            let mut vars = StageVars::default();
            for ins in &st.instructions {
                let line = ins.span.start;
                let expand = |w: &str, vars: &StageVars| {
                    lexer
                        .expand(w, vars)
                        .map_err(|e| BuildError::at(line, e.to_string()))
                };
                let mut froms: Vec<String> = Vec::new();
                match &ins.kind {
                    InstructionKind::Arg(decls) => {
                        vars.declare(decls, &globals, build_args, &lexer)
                            .map_err(|e| BuildError::at(line, e.to_string()))?;
                    }
                    InstructionKind::Env(pairs) => {
                        for kv in pairs {
                            let v = expand(&kv.value, &vars)?;
                            vars.env.set(&kv.key, v);
                        }
                    }
                    InstructionKind::Copy(c) => {
                        if let Some(f) = &c.from {
                            froms.push(expand(f, &vars)?);
                        }
                    }
                    InstructionKind::Run(r) => {
                        for m in &r.mounts {
                            let m = Mount::parse_expanded(&m.raw, &mut |w: &str| {
                                lexer.expand(w, &vars)
                            })
                            .map_err(|e| BuildError::at(line, e.to_string()))?;
                            if let Some(f) = m.from {
                                froms.push(f);
                            }
                        }
                    }
                    _ => {}
                }
                for from in froms {
                    let dep = resolve_from(&from, index, &names, stages.len())
                        .map_err(|m| BuildError::at(line, m))?;
                    let Some(stage) = stages.get_mut(index) else {
                        continue;
                    };
                    match dep {
                        Some(i) => {
                            stage.deps.insert(i);
                        }
                        None => {
                            stage.images.insert(from);
                        }
                    }
                }
            }
        }

        let target = match &opts.target {
            None => stages
                .len()
                .checked_sub(1)
                .ok_or_else(|| BuildError::at(0, "the Dockerfile has no stages"))?,
            Some(t) => *names
                .get(&t.to_ascii_lowercase())
                .ok_or_else(|| BuildError::UnknownTarget(t.clone()))?,
        };
        let order = topological_order(&stages, target)?;
        Ok(Plan {
            stages,
            target,
            order,
            globals,
            build_platform,
            target_platform,
        })
    }

    /// The needed stages in waves: every stage of a wave depends only on earlier waves, so the
    /// stages of one wave can be built side by side.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut level: BTreeMap<usize, usize> = BTreeMap::new();
        for &i in &self.order {
            let l = self
                .stages
                .get(i)
                .map(|s| {
                    s.deps
                        .iter()
                        .filter_map(|d| level.get(d))
                        .map(|l| l + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            level.insert(i, l);
        }
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for &i in &self.order {
            let l = level.get(&i).copied().unwrap_or(0);
            while waves.len() <= l {
                waves.push(Vec::new());
            }
            if let Some(w) = waves.get_mut(l) {
                w.push(i);
            }
        }
        waves
    }
}

/// `--from` value → a stage index, or `None` for an image.
fn resolve_from(
    from: &str,
    current: usize,
    names: &BTreeMap<String, usize>,
    count: usize,
) -> Result<Option<usize>, String> {
    if let Ok(i) = from.parse::<usize>() {
        if i >= count {
            return Err(format!("invalid stage index {i}"));
        }
        if i == current {
            return Err(format!(
                "invalid from flag value {from}: refers to current build stage"
            ));
        }
        return Ok(Some(i));
    }
    match names.get(&from.to_ascii_lowercase()) {
        Some(&i) if i == current => Err(format!(
            "invalid from flag value {from}: refers to current build stage"
        )),
        Some(&i) => Ok(Some(i)),
        None => Ok(None),
    }
}

/// The target's dependencies, depth first, each after what it reads; a cycle is an error.
fn topological_order(stages: &[PlannedStage], target: usize) -> Result<Vec<usize>, BuildError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        stages: &[PlannedStage],
        marks: &mut [Mark],
        out: &mut Vec<usize>,
    ) -> Result<(), BuildError> {
        let Some(stage) = stages.get(i) else {
            return Ok(());
        };
        match marks.get(i).copied() {
            Some(Mark::Done) | None => return Ok(()),
            Some(Mark::Visiting) => return Err(BuildError::Cycle(stage.display_name())),
            Some(Mark::New) => {}
        }
        if let Some(m) = marks.get_mut(i) {
            *m = Mark::Visiting;
        }
        for &d in &stage.deps {
            visit(d, stages, marks, out)?;
        }
        if let Some(m) = marks.get_mut(i) {
            *m = Mark::Done;
        }
        out.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; stages.len()];
    let mut out = Vec::new();
    visit(target, stages, &mut marks, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str, opts: &BuildOptions) -> Result<Plan, BuildError> {
        let df = hull_dockerfile::parse(text).unwrap();
        let ba = BuildArgs::new(opts.build_args.clone());
        Plan::new(&df, opts, &ba)
    }

    fn amd64() -> BuildOptions {
        BuildOptions {
            build_platform: Some(Platform::new("linux", "amd64", None)),
            ..BuildOptions::default()
        }
    }

    #[test]
    fn only_what_the_target_needs_is_built_in_dependency_order() {
        let text = "\
FROM alpine AS base
RUN echo base
FROM base AS build
RUN echo build
FROM busybox AS unrelated
FROM scratch AS tools
COPY --from=build /out /out
FROM base
COPY --from=tools /out /app
COPY --from=docker.io/library/golang:1.22 /usr/local/go /go
";
        let p = plan(text, &amd64()).unwrap();
        assert_eq!(p.target, 4);
        assert_eq!(p.order, vec![0, 1, 3, 4]);
        assert_eq!(p.stages[1].base, Base::Stage(0));
        assert_eq!(p.stages[3].base, Base::Scratch);
        assert_eq!(p.stages[0].base, Base::Image("alpine".into()));
        assert_eq!(
            p.stages[4].images,
            BTreeSet::from(["docker.io/library/golang:1.22".to_string()])
        );
        assert_eq!(p.waves(), vec![vec![0], vec![1], vec![3], vec![4]]);

        let p = plan(
            text,
            &BuildOptions {
                target: Some("TOOLS".into()),
                ..amd64()
            },
        )
        .unwrap();
        assert_eq!(p.order, vec![0, 1, 3]);
    }

    #[test]
    fn independent_stages_share_a_wave() {
        let text = "\
FROM alpine AS a
FROM busybox AS b
FROM scratch
COPY --from=a /x /x
COPY --from=1 /y /y
";
        let p = plan(text, &amd64()).unwrap();
        assert_eq!(p.waves(), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn global_args_and_platforms_resolve_bases() {
        let text = "\
ARG VARIANT=slim
ARG REG
FROM --platform=$BUILDPLATFORM ${REG:-docker.io}/debian:bookworm-$VARIANT AS build
FROM build AS inherits
FROM --platform=linux/arm64 alpine
";
        let mut opts = BuildOptions {
            platform: Some(Platform::new("linux", "arm", Some("v7"))),
            ..amd64()
        };
        opts.build_args.insert("VARIANT".into(), "full".into());
        let p = plan(text, &opts).unwrap();
        assert_eq!(
            p.stages[0].base,
            Base::Image("docker.io/debian:bookworm-full".into())
        );
        assert_eq!(p.stages[0].platform, Platform::new("linux", "amd64", None));
        assert_eq!(p.stages[1].platform, Platform::new("linux", "amd64", None));
        assert_eq!(p.stages[2].platform, Platform::new("linux", "arm64", None));
        assert_eq!(p.target_platform, Platform::new("linux", "arm", Some("v7")));
    }

    #[test]
    fn from_flags_expand_with_the_stage_arguments() {
        let text = "\
ARG SRC=one
FROM alpine AS one
FROM alpine AS two
FROM scratch
ARG SRC
COPY --from=$SRC /a /a
RUN --mount=type=bind,from=two,target=/mnt true
";
        let p = plan(text, &amd64()).unwrap();
        assert_eq!(p.stages[2].deps, BTreeSet::from([0, 1]));
        assert!(p.stages[2].images.is_empty());
    }

    #[test]
    fn bad_graphs_are_errors_naming_the_line() {
        let cases = [
            (
                "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n",
                "circular dependency detected on stage: ",
            ),
            (
                "FROM alpine AS a\nCOPY --from=a /x /x\n",
                "Dockerfile:2: invalid from flag value a: refers to current build stage",
            ),
            (
                "FROM alpine\nCOPY --from=3 /x /x\n",
                "Dockerfile:2: invalid stage index 3",
            ),
            (
                "FROM alpine AS a\nFROM alpine AS A\n",
                "Dockerfile:2: duplicate stage name \"a\"",
            ),
            (
                "ARG X\nFROM $X\n",
                "Dockerfile:2: base name ($X) should not be blank",
            ),
            (
                "FROM --platform=windows alpine\n",
                "Dockerfile:1: failed to parse platform windows",
            ),
        ];
        for (text, want) in cases {
            let err = match hull_dockerfile::parse(text) {
                Ok(df) => Plan::new(&df, &amd64(), &BuildArgs::default())
                    .map(|_| ())
                    .unwrap_err()
                    .to_string(),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
        let err = plan(
            "FROM alpine\n",
            &BuildOptions {
                target: Some("nope".into()),
                ..amd64()
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "target stage \"nope\" could not be found");
    }
}
