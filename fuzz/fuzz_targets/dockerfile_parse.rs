//! Parses arbitrary text as a Dockerfile. Parsing may fail but must not panic; whatever parses
//! must have ordered spans inside the file, and every word the builder will expand must expand
//! (or fail) without panicking, as must mounts re-parsed with expansion and the text read as a
//! `.dockerignore`.

#![no_main]

use hull_dockerfile::ignore::Matcher;
use hull_dockerfile::{Instruction, InstructionKind, Lexer, Mount, NoVars, Source};
use libfuzzer_sys::fuzz_target;

fn check_instruction(i: &Instruction, lines: usize, lexer: &Lexer) {
    assert!(
        i.span.start >= 1 && i.span.start <= i.span.end && i.span.end <= lines,
        "bad span {:?} in {lines} lines",
        i.span
    );
    assert!(!i.original.is_empty());
    let vars = [("A", "x y"), ("EMPTY", "")];
    let mut words: Vec<&str> = Vec::new();
    match &i.kind {
        InstructionKind::Env(kv) | InstructionKind::Label(kv) => {
            words.extend(kv.iter().flat_map(|p| [p.key.as_str(), p.value.as_str()]))
        }
        InstructionKind::Arg(decls) => {
            words.extend(decls.iter().filter_map(|d| d.default.as_deref()))
        }
        InstructionKind::Expose(v) | InstructionKind::Volume(v) => {
            words.extend(v.iter().map(String::as_str))
        }
        InstructionKind::Workdir(s) | InstructionKind::User(s) | InstructionKind::Stopsignal(s) => {
            words.push(s)
        }
        InstructionKind::Copy(c) => {
            words.push(&c.dest);
            words.extend(c.sources.iter().filter_map(|s| match s {
                Source::Path(p) => Some(p.as_str()),
                Source::Heredoc(_) => None,
            }));
        }
        InstructionKind::Add(a) => words.push(&a.dest),
        InstructionKind::Run(r) => {
            for m in &r.mounts {
                let _ = Mount::parse_expanded(&m.raw, &mut |w| lexer.expand(w, &vars));
            }
            for h in &r.heredocs {
                let _ = h.content();
                let _ = Lexer::new('\\')
                    .skip_quotes(true)
                    .expand(&h.content(), &vars);
            }
        }
        InstructionKind::Onbuild(ob) => check_instruction(&ob.instruction, lines, lexer),
        InstructionKind::Healthcheck(h) => {
            let _ = h.test();
        }
        _ => {}
    }
    for w in words {
        let _ = lexer.expand(w, &vars);
        let _ = lexer.expand_words(w, &NoVars);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(df) = hull_dockerfile::parse(text) {
        assert!(!df.stages.is_empty());
        let lines = text.split_inclusive('\n').count();
        let lexer = Lexer::new(df.directives.escape_char());
        for i in &df.global_args {
            check_instruction(i, lines, &lexer);
        }
        for stage in &df.stages {
            assert!(stage.span.start >= 1 && stage.span.end <= lines);
            let _ = lexer.expand(&stage.base, &NoVars);
            for i in &stage.instructions {
                check_instruction(i, lines, &lexer);
            }
        }
    }
    if let Ok(m) = Matcher::parse(text) {
        for line in text.lines().take(8) {
            let _ = m.excluded(line, false);
            let _ = m.could_match_inside(line);
        }
    }
});
