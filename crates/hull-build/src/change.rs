//! `--change` instructions (`hull import --change 'CMD ["sh"]'`, as `docker import` and `docker
//! commit` take them): Dockerfile instructions that only change an image's config, parsed by the
//! Dockerfile parser and applied by the same dispatcher a build uses, so quoting, escapes, JSON
//! and shell forms, and `$VAR` expansion (from the config's `Env` and earlier `ENV` changes)
//! are exactly a Dockerfile's.

use hull_dockerfile::{InstructionKind, Lexer};
use hull_oci::ImageConfig;

use crate::args::{BuildArgs, GlobalArgs};
use crate::step::StageState;

/// A `--change` that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --change {change:?}: {reason}")]
pub struct ChangeError {
    pub change: String,
    pub reason: String,
}

/// The instructions a `--change` may be (Docker's list, plus SHELL and HEALTHCHECK).
const ALLOWED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Applies `changes` in order to `config`. History is not touched: the caller records what it
/// made.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<(), ChangeError> {
    let mut state = StageState::new(config.clone(), Lexer::new('\\'));
    let globals = GlobalArgs::new(&[]);
    let args = BuildArgs::default();
    for change in changes {
        let bad = |reason: String| ChangeError {
            change: change.clone(),
            reason,
        };
        if change.contains('\n') {
            return Err(bad("one instruction per --change".into()));
        }
        let df = hull_dockerfile::parse(&format!("FROM scratch\n{change}\n"))
            .map_err(|e| bad(e.to_string()))?;
        if df.stages.len() != 1 {
            // The change was a FROM, which starts a stage.
            return Err(bad(format!("the instruction must be one of {ALLOWED}")));
        }
        let mut found = df
            .stages
            .into_iter()
            .next()
            .map(|s| s.instructions)
            .unwrap_or_default();
        let ins = match (found.pop(), found.is_empty()) {
            (Some(ins), true) => ins,
            _ => return Err(bad("expected one instruction".into())),
        };
        let allowed = matches!(
            ins.kind,
            InstructionKind::Cmd(_)
                | InstructionKind::Entrypoint(_)
                | InstructionKind::Env(_)
                | InstructionKind::Expose(_)
                | InstructionKind::Healthcheck(_)
                | InstructionKind::Label(_)
                | InstructionKind::Onbuild(_)
                | InstructionKind::Shell(_)
                | InstructionKind::Stopsignal(_)
                | InstructionKind::User(_)
                | InstructionKind::Volume(_)
                | InstructionKind::Workdir(_)
        );
        if !allowed {
            return Err(bad(format!("the instruction must be one of {ALLOWED}")));
        }
        // WORKDIR's directory is not created: there is no filesystem step here, as with Docker.
        state.dispatch(&ins, &globals, &args).map_err(|e| match e {
            crate::BuildError::Dockerfile { message, .. } => bad(message),
            other => bad(other.to_string()),
        })?;
    }
    *config = state.config;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<hull_oci::ContainerConfig, ChangeError> {
        let mut c = ImageConfig::default();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &changes)?;
        Ok(c.config.unwrap_or_default())
    }

    #[test]
    fn changes_read_like_a_dockerfile() {
        let c = apply(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app --flag",
            "ENV A=1 B=\"two words\"",
            "ENV C=${A}-x",
            "LABEL org.example.a=b \"quoted key\"=v",
            "EXPOSE 80 53/udp",
            "VOLUME [\"/data\"]",
            "WORKDIR /srv/$A",
            "USER 1000:1000",
            "STOPSIGNAL SIGTERM",
            "ONBUILD RUN make",
        ])
        .unwrap();
        assert_eq!(
            c.cmd,
            Some(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            c.entrypoint,
            Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "/bin/app --flag".into()
            ])
        );
        let env = c.env.unwrap();
        assert!(env.contains(&"A=1".into()));
        assert!(env.contains(&"B=two words".into()));
        assert!(env.contains(&"C=1-x".into()), "{env:?}");
        let labels = c.labels.unwrap();
        assert_eq!(labels["org.example.a"], "b");
        assert_eq!(labels["quoted key"], "v");
        let ports = c.exposed_ports.unwrap();
        assert!(ports.contains_key("80/tcp") && ports.contains_key("53/udp"));
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/1"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(c.on_build, Some(vec!["RUN make".into()]));
    }

    #[test]
    fn other_instructions_and_bad_syntax_are_refused_by_name() {
        for (change, want) in [
            ("RUN make", "must be one of"),
            ("COPY a b", "must be one of"),
            ("FROM busybox", "must be one of"),
            ("USER", ""),
            ("BOGUS x", ""),
            ("ENV A=1\nRUN x", "one instruction"),
            ("EXPOSE http", ""),
            ("ENV =x", ""),
            ("LABEL a=\"b", ""),
            ("SHELL sh", ""),
        ] {
            let e = apply(&[change]).unwrap_err();
            assert_eq!(e.change, change);
            assert!(e.to_string().starts_with("invalid --change"), "{e}");
            assert!(e.reason.contains(want), "{change}: {e}");
        }
    }
}
