//! `ARG` scoping, as BuildKit's frontend does it:
//!
//! - `--build-arg` values ([`BuildArgs`]) override every declaration's default, global or in a
//!   stage; a build argument that no `ARG` consumes is reported ([`BuildArgs::unused`]).
//! - The automatic platform arguments (`BUILDPLATFORM`, `TARGETARCH`, …; [`platform_args`]) and
//!   the global `ARG`s (declared before the first `FROM`) form the *global scope*: usable in
//!   `FROM` lines, and inside a stage only after a bare `ARG NAME` re-declares them.
//! - Inside a stage, a variable is looked up in the stage's environment (the base image's `Env`
//!   and the stage's `ENV`s) first, then in its declared `ARG`s: ENV wins over an ARG of the same
//!   name ([`StageVars`]).
//! - The proxy variables ([`PROXY_ARGS`]) may be given without any declaration; they reach RUN
//!   steps but not the image.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use hull_dockerfile::{ArgDecl, ExpandError, Lexer, Lookup};
use hull_oci::Platform;

/// Arguments every build accepts without a declaration.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The `--build-arg` values of a build, remembering which ones a declaration consumed.
#[derive(Debug, Default)]
pub struct BuildArgs {
    values: BTreeMap<String, String>,
    consumed: Mutex<BTreeSet<String>>,
}

impl BuildArgs {
    pub fn new(values: BTreeMap<String, String>) -> BuildArgs {
        BuildArgs {
            values,
            consumed: Mutex::new(BTreeSet::new()),
        }
    }

    /// The value given for `name`, marking it consumed.
    pub fn take(&self, name: &str) -> Option<&str> {
        let v = self.values.get(name)?;
        self.consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        Some(v.as_str())
    }

    /// The proxy variables given, which reach RUN steps undeclared.
    pub fn proxies(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter_map(|n| self.values.get(*n).map(|v| (n.to_string(), v.clone())))
            .collect()
    }

    /// Build arguments that no `ARG` consumed (proxy variables never count), sorted: BuildKit
    /// warns `One or more build-args [A B] were not consumed`.
    pub fn unused(&self) -> Vec<String> {
        let consumed = self.consumed.lock().unwrap_or_else(|e| e.into_inner());
        self.values
            .keys()
            .filter(|k| !consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

/// The automatic platform arguments, in BuildKit's order: `BUILDPLATFORM`, `BUILDOS`,
/// `BUILDARCH`, `BUILDVARIANT`, then the same four for `TARGET`.
pub fn platform_args(build: &Platform, target: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(8);
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        out.push((format!("{prefix}PLATFORM"), platform_string(p)));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

/// `os/arch[/variant]`.
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

/// Variables in order of definition; a later definition of a name replaces the earlier one's
/// value but the name keeps its place (what an image's `Env` list does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarList(Vec<(String, String)>);

impl VarList {
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Lookup for VarList {
    fn get(&self, name: &str) -> Option<&str> {
        VarList::get(self, name)
    }
}

/// The global scope: automatic platform arguments, then the global `ARG`s in order.
/// A global declared without a default and not given as a build argument is declared but unset.
#[derive(Debug, Clone, Default)]
pub struct GlobalArgs {
    values: VarList,
    declared: BTreeSet<String>,
}

impl GlobalArgs {
    /// The scope before any global `ARG`: the automatic platform arguments.
    pub fn new(platform: &[(String, String)]) -> GlobalArgs {
        let mut g = GlobalArgs::default();
        for (k, v) in platform {
            g.values.set(k, v.clone());
            g.declared.insert(k.clone());
        }
        g
    }

    /// Evaluates the global declarations in order (see [`GlobalArgs::declare`]).
    pub fn evaluate<'a>(
        platform: &[(String, String)],
        decls: impl IntoIterator<Item = &'a ArgDecl>,
        build_args: &BuildArgs,
        lexer: &Lexer,
    ) -> Result<GlobalArgs, ExpandError> {
        let mut g = GlobalArgs::new(platform);
        for d in decls {
            g.declare(d, build_args, lexer)?;
        }
        Ok(g)
    }

    /// Declares one global: its build argument if given, else its default expanded with the
    /// globals before it; without either it is declared but unset.
    pub fn declare(
        &mut self,
        d: &ArgDecl,
        build_args: &BuildArgs,
        lexer: &Lexer,
    ) -> Result<(), ExpandError> {
        let value = match build_args.take(&d.name) {
            Some(v) => Some(v.to_string()),
            None => match &d.default {
                Some(def) => Some(lexer.expand(def, &self.values)?),
                None => None,
            },
        };
        self.declared.insert(d.name.clone());
        if let Some(v) = value {
            self.values.set(&d.name, v);
        }
        Ok(())
    }

    /// The value of a global, if declared and set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name)
    }

    /// What `FROM` lines expand with.
    pub fn vars(&self) -> &VarList {
        &self.values
    }
}

/// A stage's variables while its instructions are dispatched.
#[derive(Debug, Clone, Default)]
pub struct StageVars {
    /// The environment: the base image's `Env`, then `ENV`s.
    pub env: VarList,
    /// Declared `ARG`s that have a value.
    pub args: VarList,
}

impl StageVars {
    /// Starts a stage on a base image's environment (`KEY=value` entries).
    pub fn from_image_env(env: &[String]) -> StageVars {
        let mut vars = StageVars::default();
        for e in env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            vars.env.set(k, v.to_string());
        }
        vars
    }

    /// Dispatches `ARG` declarations: a build argument wins, then the declaration's default
    /// (expanded with the stage's variables so far), then the global of that name.
    pub fn declare(
        &mut self,
        decls: &[ArgDecl],
        globals: &GlobalArgs,
        build_args: &BuildArgs,
        lexer: &Lexer,
    ) -> Result<(), ExpandError> {
        for d in decls {
            let value = match build_args.take(&d.name) {
                Some(v) => Some(v.to_string()),
                None => match &d.default {
                    Some(def) => Some(lexer.expand(def, self)?),
                    None => globals.get(&d.name).map(str::to_string),
                },
            };
            if let Some(v) = value {
                self.args.set(&d.name, v);
            }
        }
        Ok(())
    }

    /// The declared arguments that RUN steps see in their environment but the image does not
    /// keep (those an `ENV` of the same name does not shadow).
    pub fn run_only_args(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .filter(|(k, _)| self.env.get(k).is_none())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Lookup for StageVars {
    fn get(&self, name: &str) -> Option<&str> {
        self.env.get(name).or_else(|| self.args.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, default: Option<&str>) -> ArgDecl {
        ArgDecl {
            name: name.to_string(),
            default: default.map(str::to_string),
        }
    }

    fn build_args(pairs: &[(&str, &str)]) -> BuildArgs {
        BuildArgs::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn platform_arguments_follow_buildkit() {
        let build = Platform::new("linux", "amd64", None);
        let target = Platform::new("linux", "arm", Some("v7"));
        let args = platform_args(&build, &target);
        let get = |k: &str| args.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("BUILDPLATFORM"), "linux/amd64");
        assert_eq!(get("BUILDVARIANT"), "");
        assert_eq!(get("TARGETPLATFORM"), "linux/arm/v7");
        assert_eq!(get("TARGETARCH"), "arm");
        assert_eq!(get("TARGETVARIANT"), "v7");
    }

    #[test]
    fn globals_expand_in_order_and_build_args_win() {
        let lexer = Lexer::new('\\');
        let ba = build_args(&[("TAG", "3.20"), ("UNUSED", "x"), ("HTTP_PROXY", "p")]);
        let g = GlobalArgs::evaluate(
            &platform_args(&Platform::host(), &Platform::new("linux", "arm64", None)),
            &[
                decl("BASE", Some("alpine")),
                decl("TAG", Some("3.19")),
                decl("IMAGE", Some("${BASE}:${TAG}-$TARGETARCH")),
                decl("EMPTY", None),
            ],
            &ba,
            &lexer,
        )
        .unwrap();
        assert_eq!(g.get("IMAGE"), Some("alpine:3.20-arm64"));
        assert_eq!(g.get("EMPTY"), None);
        assert_eq!(ba.unused(), vec!["UNUSED".to_string()]);
        assert_eq!(ba.proxies(), vec![("HTTP_PROXY".into(), "p".into())]);
    }

    #[test]
    fn stage_arguments_redeclare_globals_and_env_wins() {
        let lexer = Lexer::new('\\');
        let ba = build_args(&[("MODE", "release")]);
        let g = GlobalArgs::evaluate(
            &[],
            &[decl("VERSION", Some("1.0")), decl("OTHER", Some("o"))],
            &ba,
            &lexer,
        )
        .unwrap();
        let mut s = StageVars::from_image_env(&["PATH=/usr/bin".into(), "VERSION=env".into()]);
        // globals are invisible until re-declared
        assert_eq!(Lookup::get(&s, "OTHER"), None);
        s.declare(
            &[
                decl("OTHER", None),
                decl("MODE", Some("debug")),
                decl("DIR", Some("/opt/$OTHER")),
                decl("VERSION", None),
            ],
            &g,
            &ba,
            &lexer,
        )
        .unwrap();
        assert_eq!(Lookup::get(&s, "OTHER"), Some("o"));
        assert_eq!(Lookup::get(&s, "MODE"), Some("release"));
        assert_eq!(Lookup::get(&s, "DIR"), Some("/opt/o"));
        // ENV shadows the ARG of the same name, in lookups and in RUN's extra environment
        assert_eq!(Lookup::get(&s, "VERSION"), Some("env"));
        let run: Vec<String> = s.run_only_args().into_iter().map(|(k, _)| k).collect();
        assert_eq!(run, vec!["OTHER", "MODE", "DIR"]);
        assert!(ba.unused().is_empty());
    }

    #[test]
    fn env_lists_keep_their_order() {
        let mut v = VarList::default();
        v.set("A", "1".into());
        v.set("B", "2".into());
        v.set("A", "3".into());
        let got: Vec<_> = v.iter().collect();
        assert_eq!(got, vec![("A", "3"), ("B", "2")]);
    }
}
