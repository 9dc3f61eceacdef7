//! Renders the engine's progress events on stderr: one bar per layer on a terminal, in
//! Docker's layout (`0123456789ab: Downloading [====>     ]  1.2MB/4.5MB`), or one plain line
//! per state change when stderr is not a terminal; nothing in quiet mode.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use hull_image::{Event, EventSink, LayerEvent};
use hull_oci::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::human;

/// Below this terminal width Docker leaves the bar out and shows only the numbers.
const BAR_MIN_TERMINAL_WIDTH: u16 = 110;
const BAR_WIDTH: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars (stderr is a terminal).
    Bars,
    /// One line per layer state change (stderr is a file or pipe).
    Lines,
    /// Nothing (`-q`).
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines otherwise, nothing when `quiet`.
    pub fn detect(quiet: bool) -> Mode {
        use std::io::IsTerminal;
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// What the layers are going through: the words differ (`Pull complete`, `Loaded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Pull,
    Load,
    Push,
}

/// A layer's state, without its numbers: a plain line is printed when this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    AlreadyExists,
    Downloading,
    Resuming,
    Verifying,
    Extracting,
    Complete,
    Preparing,
    Pushing,
    Mounted,
    Pushed,
}

fn phase(e: &LayerEvent) -> Phase {
    match e {
        LayerEvent::Waiting => Phase::Waiting,
        LayerEvent::AlreadyExists => Phase::AlreadyExists,
        LayerEvent::Downloading { .. } => Phase::Downloading,
        LayerEvent::Resuming { .. } => Phase::Resuming,
        LayerEvent::Verifying => Phase::Verifying,
        LayerEvent::Extracting { .. } => Phase::Extracting,
        LayerEvent::Complete => Phase::Complete,
        LayerEvent::Preparing => Phase::Preparing,
        LayerEvent::Pushing { .. } => Phase::Pushing,
        LayerEvent::Mounted { .. } => Phase::Mounted,
        LayerEvent::Pushed => Phase::Pushed,
    }
}

/// Docker's progress box: `[====>    ]  1.2MB/4.5MB` (bar left out when `with_bar` is
/// false, numbers alone when the total is unknown).
pub fn progress_box(current: u64, total: Option<u64>, with_bar: bool) -> String {
    let cur = human::size(current);
    let Some(total) = total.filter(|t| *t > 0) else {
        return format!("{cur:>8}");
    };
    if current > total {
        return format!("{cur:>8}");
    }
    let filled = (current.saturating_mul(100) / total / 2).min(BAR_WIDTH);
    let mut s = String::new();
    if with_bar {
        let filled = usize::try_from(filled).unwrap_or(0);
        let empty = usize::try_from(BAR_WIDTH)
            .unwrap_or(0)
            .saturating_sub(filled);
        s.push('[');
        s.push_str(&"=".repeat(filled));
        s.push('>');
        s.push_str(&" ".repeat(empty));
        s.push_str("] ");
    }
    s.push_str(&format!("{cur:>8}/{}", human::size(total)));
    s
}

/// The status text Docker shows for a layer event (without its progress numbers).
pub fn status_text(activity: Activity, e: &LayerEvent) -> String {
    match (activity, e) {
        (Activity::Load, LayerEvent::Downloading { .. } | LayerEvent::Extracting { .. }) => {
            return "Loading layer".to_string();
        }
        (Activity::Load, LayerEvent::Complete) => return "Loaded".to_string(),
        (Activity::Push, LayerEvent::AlreadyExists) => return "Layer already exists".to_string(),
        _ => {}
    }
    match e {
        LayerEvent::Waiting => "Waiting".to_string(),
        LayerEvent::AlreadyExists => "Already exists".to_string(),
        LayerEvent::Downloading { .. } => "Downloading".to_string(),
        LayerEvent::Resuming { offset } => format!("Resuming download at {}", human::size(*offset)),
        LayerEvent::Verifying => "Verifying Checksum".to_string(),
        LayerEvent::Extracting { .. } => "Extracting".to_string(),
        LayerEvent::Complete => "Pull complete".to_string(),
        LayerEvent::Preparing => "Preparing".to_string(),
        LayerEvent::Pushing { .. } => "Pushing".to_string(),
        LayerEvent::Mounted { from } => format!("Mounted from {from}"),
        LayerEvent::Pushed => "Pushed".to_string(),
    }
}

/// The full line for a layer on a terminal.
pub fn bar_line(activity: Activity, digest: &Digest, e: &LayerEvent, with_bar: bool) -> String {
    let status = status_text(activity, e);
    match e {
        LayerEvent::Downloading { current, total }
        | LayerEvent::Extracting { current, total }
        | LayerEvent::Pushing { current, total } => {
            format!(
                "{}: {status} {}",
                digest.short(),
                progress_box(*current, *total, with_bar)
            )
        }
        _ => format!("{}: {status}", digest.short()),
    }
}

struct State {
    mode: Mode,
    activity: Activity,
    multi: Option<MultiProgress>,
    with_bar: bool,
    bars: HashMap<Digest, ProgressBar>,
    phases: HashMap<Digest, Phase>,
    resolved: Option<Digest>,
    out: Box<dyn Write + Send>,
}

impl State {
    fn print(&mut self, line: &str) {
        match (&self.multi, self.mode) {
            (_, Mode::Quiet) => {}
            (Some(m), _) => {
                let _ = m.println(line);
            }
            (None, _) => {
                let _ = writeln!(self.out, "{line}");
                let _ = self.out.flush();
            }
        }
    }

    fn layer(&mut self, digest: Digest, e: LayerEvent) {
        let now = phase(&e);
        let changed = self.phases.insert(digest.clone(), now) != Some(now);
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                if changed {
                    let line = format!("{}: {}", digest.short(), status_text(self.activity, &e));
                    self.print(&line);
                }
            }
            Mode::Bars => {
                let line = bar_line(self.activity, &digest, &e, self.with_bar);
                let multi = self.multi.get_or_insert_with(|| {
                    MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
                });
                let bar = self.bars.entry(digest).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::hidden());
                    bar.set_style(
                        ProgressStyle::with_template("{wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar
                });
                bar.set_message(line);
                if matches!(
                    now,
                    Phase::Complete | Phase::AlreadyExists | Phase::Mounted | Phase::Pushed
                ) {
                    bar.finish();
                } else {
                    bar.tick();
                }
            }
        }
    }
}

/// A progress renderer; [`Progress::sink`] gives the engine its event callback.
#[derive(Clone)]
pub struct Progress {
    state: Arc<Mutex<State>>,
}

impl Progress {
    /// Renders to stderr.
    pub fn new(mode: Mode, activity: Activity) -> Progress {
        let with_bar = terminal_width().is_none_or(|w| w > BAR_MIN_TERMINAL_WIDTH);
        Progress::build(mode, activity, with_bar, Box::new(std::io::stderr()))
    }

    /// Renders plain lines to `out` (for tests and for anything that is not a terminal).
    #[cfg(test)]
    pub fn to_writer(mode: Mode, activity: Activity, out: Box<dyn Write + Send>) -> Progress {
        let mode = if mode == Mode::Bars {
            Mode::Lines
        } else {
            mode
        };
        Progress::build(mode, activity, false, out)
    }

    fn build(
        mode: Mode,
        activity: Activity,
        with_bar: bool,
        out: Box<dyn Write + Send>,
    ) -> Progress {
        Progress {
            state: Arc::new(Mutex::new(State {
                mode,
                activity,
                multi: None,
                with_bar,
                bars: HashMap::new(),
                phases: HashMap::new(),
                resolved: None,
                out,
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Handles one event.
    pub fn handle(&self, event: Event) {
        self.with(|s| match event {
            Event::Resolved { digest, .. } => s.resolved = Some(digest),
            Event::Layer { digest, event } => s.layer(digest, event),
            Event::Status(line) => s.print(&line),
        });
    }

    /// The callback to hand to the engine.
    pub fn sink(&self) -> EventSink {
        let me = self.clone();
        Arc::new(move |e| me.handle(e))
    }

    /// A status line on stderr (above the bars on a terminal); nothing in quiet mode.
    pub fn message(&self, line: &str) {
        self.with(|s| s.print(line));
    }

    /// The digest the last reference resolved to, if the engine said.
    #[cfg(test)]
    pub fn resolved(&self) -> Option<Digest> {
        self.with(|s| s.resolved.clone())
    }

    /// Leaves the bars drawn in their final state and forgets them, so that later lines are
    /// printed below them (and the next image gets bars of its own).
    pub fn finish(&self) {
        self.with(|s| {
            for (_, bar) in s.bars.drain() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            s.multi = None;
            s.phases.clear();
            s.resolved = None;
        });
    }
}

/// Columns of the terminal on stderr, if it is one.
fn terminal_width() -> Option<u16> {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|w| w.ws_col)
        .filter(|c| *c > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn digest() -> Digest {
        format!("sha256:{}", "ab12".repeat(16)).parse().unwrap()
    }

    #[test]
    fn boxes_as_docker_draws_them() {
        assert_eq!(
            progress_box(1_200_000, Some(4_500_000), true),
            format!("[{}>{}]    1.2MB/4.5MB", "=".repeat(13), " ".repeat(37))
        );
        assert_eq!(
            progress_box(1_200_000, Some(4_500_000), false),
            "   1.2MB/4.5MB"
        );
        assert_eq!(progress_box(1_200_000, None, true), "   1.2MB");
        assert_eq!(
            progress_box(10, Some(10), true),
            format!("[{}>] {:>8}/10B", "=".repeat(50), "10B")
        );
    }

    #[test]
    fn lines_only_on_state_changes() {
        let buf = Buf::default();
        let p = Progress::to_writer(Mode::Lines, Activity::Pull, Box::new(buf.clone()));
        let sink = p.sink();
        let d = digest();
        for e in [
            LayerEvent::Waiting,
            LayerEvent::Downloading {
                current: 1,
                total: Some(10),
            },
            LayerEvent::Downloading {
                current: 5,
                total: Some(10),
            },
            LayerEvent::Verifying,
            LayerEvent::Extracting {
                current: 1,
                total: None,
            },
            LayerEvent::Extracting {
                current: 2,
                total: None,
            },
            LayerEvent::Complete,
        ] {
            sink(Event::Layer {
                digest: d.clone(),
                event: e,
            });
        }
        sink(Event::Status("Loaded image: busybox:latest".into()));
        assert_eq!(
            buf.text(),
            "ab12ab12ab12: Waiting\n\
             ab12ab12ab12: Downloading\n\
             ab12ab12ab12: Verifying Checksum\n\
             ab12ab12ab12: Extracting\n\
             ab12ab12ab12: Pull complete\n\
             Loaded image: busybox:latest\n"
        );
    }

    #[test]
    fn quiet_prints_nothing_but_remembers_the_digest() {
        let buf = Buf::default();
        let p = Progress::to_writer(Mode::Quiet, Activity::Pull, Box::new(buf.clone()));
        p.handle(Event::Resolved {
            reference: "busybox".into(),
            digest: digest(),
        });
        p.handle(Event::Layer {
            digest: digest(),
            event: LayerEvent::AlreadyExists,
        });
        p.message("hello");
        assert_eq!(buf.text(), "");
        assert_eq!(p.resolved(), Some(digest()));
    }

    #[test]
    fn load_words() {
        let buf = Buf::default();
        let p = Progress::to_writer(Mode::Lines, Activity::Load, Box::new(buf.clone()));
        let d = digest();
        p.handle(Event::Layer {
            digest: d.clone(),
            event: LayerEvent::Extracting {
                current: 1,
                total: Some(2),
            },
        });
        p.handle(Event::Layer {
            digest: d,
            event: LayerEvent::Complete,
        });
        assert_eq!(
            buf.text(),
            "ab12ab12ab12: Loading layer\nab12ab12ab12: Loaded\n"
        );
    }

    #[test]
    fn terminal_lines() {
        let d = digest();
        assert_eq!(
            bar_line(Activity::Pull, &d, &LayerEvent::AlreadyExists, true),
            "ab12ab12ab12: Already exists"
        );
        assert_eq!(
            bar_line(
                Activity::Pull,
                &d,
                &LayerEvent::Downloading {
                    current: 0,
                    total: Some(100)
                },
                false
            ),
            "ab12ab12ab12: Downloading       0B/100B"
        );
    }
}
