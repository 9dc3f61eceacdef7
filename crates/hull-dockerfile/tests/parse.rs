//! Parses the Dockerfiles in `tests/parse/` and compares their syntax trees with the accepted
//! snapshots in `tests/parse/snapshots/`; checks BuildKit's error messages and line numbers for
//! Dockerfiles Docker refuses; and checks expansion of parsed words as the builder will do it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::Path;

use hull_dockerfile::ignore::Matcher;
use hull_dockerfile::{
    Command, Dockerfile, Healthcheck, InstructionKind, Lexer, MountType, NetworkMode, Source,
    expand, expand_words, parse,
};

fn corpus(name: &str) -> Dockerfile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/parse")
        .join(format!("{name}.Dockerfile"));
    let text = std::fs::read_to_string(&path).unwrap();
    parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn snapshot(name: &str) {
    let df = corpus(name);
    insta::with_settings!({
        snapshot_path => "parse/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_debug_snapshot!(name, df);
    });
}

#[test]
fn corpus_multistage() {
    snapshot("multistage");
}

#[test]
fn corpus_escape_backtick() {
    snapshot("escape_backtick");
}

#[test]
fn corpus_directives() {
    snapshot("directives");
}

#[test]
fn corpus_late_directive() {
    snapshot("late_directive");
}

#[test]
fn corpus_continuations() {
    snapshot("continuations");
}

#[test]
fn corpus_json_forms() {
    snapshot("json_forms");
}

#[test]
fn corpus_heredocs() {
    snapshot("heredocs");
}

#[test]
fn corpus_flags() {
    snapshot("flags");
}

#[test]
fn corpus_instructions() {
    snapshot("instructions");
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn kinds(df: &Dockerfile, stage: usize) -> Vec<&InstructionKind> {
    df.stages[stage]
        .instructions
        .iter()
        .map(|i| &i.kind)
        .collect()
}

#[test]
fn errors_name_the_line_like_buildkit() {
    assert_eq!(
        err("FROM a\n\nFOO bar\n"),
        "Dockerfile:3: unknown instruction: FOO"
    );
    assert_eq!(
        err("FROM a\nRUN --unknown=x echo\n"),
        "Dockerfile:2: unknown flag: unknown"
    );
    assert_eq!(
        err("FROM a\nCMD --help\n"),
        "Dockerfile:2: unknown flag: help"
    );
    assert_eq!(
        err("FROM a\nCOPY --from a b\n"),
        "Dockerfile:2: missing a value on flag: from"
    );
    assert_eq!(
        err("FROM a\nCOPY --link=maybe a b\n"),
        "Dockerfile:2: expecting boolean value for flag link, not: maybe"
    );
    assert_eq!(
        err("FROM a\nCOPY --from=x --from=y a b\n"),
        "Dockerfile:2: duplicate flag specified: from"
    );
    assert_eq!(
        err("FROM a\nADD --from=x a b\n"),
        "Dockerfile:2: unknown flag: from"
    );
    assert_eq!(
        err("FROM a\nCOPY --checksum=x a b\n"),
        "Dockerfile:2: unknown flag: checksum"
    );
    assert_eq!(err("FROM --foo=1 a\n"), "Dockerfile:1: unknown flag: foo");
}

#[test]
fn onbuild_refuses_onbuild_from_and_maintainer() {
    assert_eq!(
        err("FROM a\nONBUILD ONBUILD RUN x\n"),
        "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        err("FROM a\nONBUILD from b\n"),
        "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err("FROM a\nONBUILD MAINTAINER me\n"),
        "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err("FROM a\nONBUILD\n"),
        "Dockerfile:2: ONBUILD requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nONBUILD BOGUS x\n"),
        "Dockerfile:2: unknown instruction: BOGUS"
    );
}

#[test]
fn stage_structure_errors() {
    assert_eq!(err(""), "Dockerfile:0: file with no instructions");
    assert_eq!(
        err("# only a comment\n\n"),
        "Dockerfile:2: file with no instructions"
    );
    assert_eq!(
        err("ARG X\n"),
        "Dockerfile:1: dockerfile contains no stages to build"
    );
    assert_eq!(
        err("ARG X\nRUN x\nFROM a\n"),
        "Dockerfile:2: no build stage in current context"
    );
    assert_eq!(
        err("RUN x\nFOO y\n"),
        "Dockerfile:1: no build stage in current context"
    );
    assert_eq!(
        err("FROM a AS x\nFROM b AS X\n"),
        "Dockerfile:2: duplicate stage name \"x\""
    );
    assert_eq!(
        err("FROM a AS 1st\n"),
        "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        err("FROM a AS\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM a b c d\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
}

#[test]
fn directive_errors() {
    assert_eq!(
        err("# escape=x\nFROM a\n"),
        "Dockerfile:1: invalid escape token 'x' does not match ` or \\"
    );
    assert_eq!(
        err("# escape=`\n# escape=\\\nFROM a\n"),
        "Dockerfile:2: only one escape parser directive can be used"
    );
    assert_eq!(
        err("# syntax=a\n# SYNTAX=b\nFROM a\n"),
        "Dockerfile:2: only one syntax parser directive can be used"
    );
    // An unknown directive ends the directive section, so the repeated one is a comment.
    let df = parse("# unknown=1\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(df.directives.escape, None);
}

#[test]
fn argument_errors() {
    let cases = [
        (
            "SHELL /bin/sh -c",
            "SHELL requires the arguments to be in JSON notation",
        ),
        ("SHELL []", "SHELL requires at least one argument"),
        (
            "CMD [\"a\", 1]",
            "when using JSON array syntax, arrays must be comprised of strings only",
        ),
        (
            "RUN [\"a\", null]",
            "when using JSON array syntax, arrays must be comprised of strings only",
        ),
        (
            "COPY onlyone",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "ADD",
            "ADD requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        ("ENV A", "ENV must have two arguments"),
        ("ENV", "ENV requires at least one argument"),
        (
            "ENV A=1 B",
            "Syntax error - can't find = in \"B\". Must be of the form: name=value",
        ),
        ("ENV =x", "ENV names can not be blank"),
        ("LABEL", "LABEL requires at least one argument"),
        ("ARG", "ARG requires at least one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        (
            "VOLUME [\"\"]",
            "VOLUME specified can not be an empty string",
        ),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("USER", "USER requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "HEALTHCHECK NONE extra",
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "HEALTHCHECK RUN x",
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --interval=10us CMD x",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --timeout=-1s CMD x",
            "Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --interval=often CMD x",
            "time: invalid duration \"often\"",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "--retries cannot be negative (-1)",
        ),
        (
            "HEALTHCHECK --retries=x CMD x",
            "strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "COPY <<EOF <<OUT\nx\nEOF\ny\nOUT",
            "COPY cannot accept a heredoc as a destination",
        ),
        (
            "RUN --network=bridge x",
            "unsupported network mode \"bridge\"",
        ),
        ("RUN --security=root x", "security \"root\" is not valid"),
        (
            "RUN --mount=type=volume x",
            "unsupported mount type \"volume\"",
        ),
        (
            "RUN --mount=type=bind,mode=0644,target=/x x",
            "mode not allowed for \"bind\" type mounts",
        ),
        (
            "RUN --mount=from=$STAGE,target=/x x",
            "'from' doesn't support variable expansion, define alias stage instead",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(
            err(&format!("FROM a\n{line}\n")),
            format!("Dockerfile:2: {message}"),
            "for {line:?}"
        );
    }
}

#[test]
fn unterminated_heredoc_reports_the_instruction_line() {
    assert_eq!(
        err("FROM a\nRUN true\nRUN <<EOF\necho\nEO\n"),
        "Dockerfile:3: unterminated heredoc"
    );
}

#[test]
fn spans_cover_continuations_and_heredoc_bodies() {
    let df = parse("FROM a\n\nRUN a \\\n  b\nRUN <<EOF\nx\nEOF\nCMD c\n").unwrap();
    let spans: Vec<(usize, usize)> = df.stages[0]
        .instructions
        .iter()
        .map(|i| (i.span.start, i.span.end))
        .collect();
    assert_eq!(spans, [(3, 4), (5, 7), (8, 8)]);
    assert_eq!((df.stages[0].span.start, df.stages[0].span.end), (1, 1));
    assert_eq!(df.stages[0].instructions[0].original, "RUN a   b");
}

#[test]
fn crlf_and_bom_are_accepted() {
    let df = parse(
        "\u{feff}# escape=`\r\nFROM a\r\nRUN echo one `\r\n  two\r\nRUN <<EOF\r\nbody\r\nEOF\r\n",
    )
    .unwrap();
    assert_eq!(df.directives.escape, Some('`'));
    let InstructionKind::Run(run) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(run.command, Command::Shell("echo one   two".into()));
    let InstructionKind::Run(run) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(run.heredocs[0].raw_content, "body\r\n");
    assert_eq!(df.stages[0].instructions[1].span.end, 7);
}

#[test]
fn global_and_stage_args_are_separate() {
    let df = parse("ARG A=1 B\nARG C\nFROM x\nARG A\nFROM y\n").unwrap();
    assert_eq!(df.global_args.len(), 2);
    let InstructionKind::Arg(decls) = &df.global_args[0].kind else {
        panic!()
    };
    assert_eq!(
        decls
            .iter()
            .map(|d| (d.name.as_str(), d.default.as_deref()))
            .collect::<Vec<_>>(),
        [("A", Some("1")), ("B", None)]
    );
    assert_eq!(kinds(&df, 0).len(), 1);
    assert!(kinds(&df, 1).is_empty());
}

#[test]
fn stages_are_found_by_name_or_index() {
    let df = parse("FROM a AS Builder\nFROM b\n").unwrap();
    assert_eq!(df.stage("builder").unwrap().base, "a");
    assert_eq!(df.stage("BUILDER").unwrap().base, "a");
    assert_eq!(df.stage("1").unwrap().base, "b");
    assert!(df.stage("2").is_none());
}

#[test]
fn onbuild_keeps_trigger_text_for_the_image_config() {
    let df = parse("FROM a\nONBUILD   RUN echo hi\nONBUILD COPY <<EOF /x\nbody\nEOF\n").unwrap();
    let InstructionKind::Onbuild(ob) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(ob.expression, "RUN echo hi");
    assert!(matches!(ob.instruction.kind, InstructionKind::Run(_)));
    let InstructionKind::Onbuild(ob) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(ob.expression, "COPY <<EOF /x\nbody\nEOF");
    let InstructionKind::Copy(copy) = &ob.instruction.kind else {
        panic!()
    };
    assert!(matches!(&copy.sources[0], Source::Heredoc(h) if h.raw_content == "body\n"));
}

#[test]
fn healthcheck_test_arrays() {
    let df = parse(
        "FROM a\nHEALTHCHECK CMD curl x\nHEALTHCHECK CMD [\"curl\", \"x\"]\nHEALTHCHECK none\n",
    )
    .unwrap();
    let tests: Vec<Vec<String>> = kinds(&df, 0)
        .iter()
        .map(|k| match k {
            InstructionKind::Healthcheck(h) => h.test(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        tests,
        [
            vec!["CMD-SHELL", "curl x"],
            vec!["CMD", "curl", "x"],
            vec!["NONE"]
        ]
    );
    assert!(matches!(
        kinds(&df, 0)[2],
        InstructionKind::Healthcheck(Healthcheck::None)
    ));
}

#[test]
fn heredoc_content_is_chomped_for_dash_form() {
    let df = parse("FROM a\nRUN <<-EOF\n\t\techo x\n\t  y\n\tEOF\n").unwrap();
    let InstructionKind::Run(run) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(run.heredocs[0].raw_content, "\t\techo x\n\t  y\n");
    assert_eq!(run.heredocs[0].content(), "echo x\n  y\n");
}

#[test]
fn words_expand_as_the_builder_will() {
    let df =
        parse("FROM a\nENV A=\"x y\" B=${A:-d}/z C='$A'\nWORKDIR /srv/${APP}\nCOPY $SRC* /d/\n")
            .unwrap();
    let vars: HashMap<String, String> = [("A", "1"), ("APP", "web"), ("SRC", "lib")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let InstructionKind::Env(pairs) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    let values: Vec<String> = pairs
        .iter()
        .map(|p| expand(&p.value, &vars).unwrap())
        .collect();
    assert_eq!(values, ["x y", "1/z", "$A"]);
    let InstructionKind::Workdir(w) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(expand(w, &vars).unwrap(), "/srv/web");
    let InstructionKind::Copy(c) = &df.stages[0].instructions[2].kind else {
        panic!()
    };
    let Source::Path(p) = &c.sources[0] else {
        panic!()
    };
    assert_eq!(expand(p, &vars).unwrap(), "lib*");
    assert!(
        df.stages[0]
            .instructions
            .iter()
            .all(|i| i.kind.expands_words())
    );
    assert_eq!(
        expand_words("$P 443", &[("P", "80 8080")]).unwrap(),
        ["80", "8080", "443"]
    );
}

#[test]
fn escape_directive_reaches_the_lexer() {
    let df = parse("# escape=`\nFROM a\nENV P=C:\\dir\\`$HOME\n").unwrap();
    let lexer = Lexer::new(df.directives.escape_char());
    let InstructionKind::Env(pairs) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(
        lexer.expand(&pairs[0].value, &[("HOME", "h")]).unwrap(),
        "C:\\dir\\$HOME"
    );
}

#[test]
fn typed_run_flags() {
    let df = corpus("flags");
    let InstructionKind::Run(run) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    let kinds: Vec<MountType> = run.mounts.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MountType::Bind,
            MountType::Secret,
            MountType::Ssh,
            MountType::Tmpfs,
            MountType::Cache
        ]
    );
    assert_eq!(run.network, Some(NetworkMode::None));
    assert!(!run.mounts[0].readonly && run.mounts[1].required && run.mounts[4].readonly);
    assert_eq!(run.mounts[3].size, Some(64 << 20));
    assert_eq!(run.command, Command::Shell("make".into()));
}

#[test]
fn dockerignore_through_the_public_api() {
    let m = Matcher::parse("# build outputs\ntarget/\n*.swp\n!target/keep.txt\n").unwrap();
    assert!(m.excluded("target/debug/x", false));
    assert!(!m.excluded("target/keep.txt", false));
    assert!(m.excluded(".a.swp", false));
    assert!(!m.excluded("src/main.rs", false));
    assert!(m.could_match_inside("target"));
    assert!(!m.could_match_inside("src"));
}

mod never_panics {
    use proptest::prelude::*;

    fn dockerfileish() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "FROM ",
            "RUN ",
            "COPY ",
            "ADD ",
            "ENV ",
            "ARG ",
            "ONBUILD ",
            "HEALTHCHECK ",
            "CMD ",
            "SHELL ",
            "--mount=",
            "type=cache,",
            "--from=",
            "<<",
            "<<-",
            "EOF",
            "\"",
            "'",
            "\\",
            "`",
            "$",
            "${",
            "}",
            ":-",
            "#",
            "# escape=`",
            "[",
            "]",
            ",",
            "=",
            " ",
            "\t",
            "\n",
            "\r\n",
            "x",
            "AS",
            "/",
            "*",
        ]);
        prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parse_expand_and_ignore_return(text in dockerfileish()) {
            if let Ok(df) = hull_dockerfile::parse(&text) {
                let lines = text.lines().count().max(1);
                for stage in &df.stages {
                    for i in &stage.instructions {
                        prop_assert!(i.span.start <= i.span.end && i.span.end <= lines + 1);
                    }
                }
            }
            let _ = hull_dockerfile::expand(&text, &[("x", "a b")]);
            let _ = hull_dockerfile::expand_words(&text, &hull_dockerfile::NoVars);
            if let Ok(m) = hull_dockerfile::ignore::Matcher::parse(&text) {
                let _ = m.excluded(&text, false);
                let _ = m.could_match_inside(&text);
            }
        }
    }
}
