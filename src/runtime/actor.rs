//! A thread that owns its state and answers commands in order: the shape of every device of the
//! executor (tch tensors may move between threads but not be shared, so each device's tensors live on
//! its own thread and travel by value).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Once;
use std::thread::JoinHandle;

/// Exit code of a run whose device failed: that of any failure (main.rs); the message says which.
const EXIT_DEVICE_FAILED: i32 = 1;
/// Names of device threads start with this; the panic hook leaves their panics to [`fail`].
const THREAD_PREFIX: &str = "device ";

/// The caller's end of a command thread.
pub struct Actor<C, R> {
    commands: Sender<C>,
    replies: Receiver<R>,
    thread: Option<JoinHandle<()>>,
}

impl<C: Send + 'static, R: Send + 'static> Actor<C, R> {
    /// Starts a thread for the device `name` ("cpu, term worker 2") that builds its state with `start`
    /// and then answers each command with `handle`, until the actor is dropped. If either fails (a
    /// libtorch error: out of memory, a CUDA error), the process stops with one line naming the device
    /// and the error: the run cannot go on without it, and its checkpoints are written atomically, so
    /// the last one is intact.
    pub fn spawn<S>(
        name: String,
        start: impl FnOnce() -> S + Send + 'static,
        mut handle: impl FnMut(&mut S, C) -> R + Send + 'static,
    ) -> Self {
        quiet_device_panics();
        let (commands, inbox) = channel::<C>();
        let (outbox, replies) = channel();
        let fail_after = injected_failure();
        let thread = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}{name}"))
            .spawn(move || {
                // Borrowed, not moved, into the guarded part: a panic leaves the reply channel open, so
                // the caller waits for a reply until `fail` ends the process, instead of seeing a
                // hang-up first.
                let (inbox, outbox) = (inbox, outbox);
                let served = catch_unwind(AssertUnwindSafe(|| {
                    let mut state = start();
                    for (n, command) in inbox.iter().enumerate() {
                        if fail_after == Some(n) {
                            panic!("injected failure ({FAIL_AFTER_VARIABLE}={n})");
                        }
                        if outbox.send(handle(&mut state, command)).is_err() {
                            break;
                        }
                    }
                }));
                if let Err(panic) = served {
                    fail(&name, panic.as_ref());
                }
            })
            .expect("the system starts a thread");
        Actor { commands, replies, thread: Some(thread) }
    }

    /// Sends a command without waiting for its reply (so several actors work at the same time).
    pub fn send(&self, command: C) {
        self.commands.send(command).expect("device thread alive");
    }

    /// The reply to the oldest command not yet answered.
    pub fn receive(&self) -> R {
        self.replies.recv().expect("device thread alive")
    }
}

/// Test hook: with this variable set to N, every device thread of the process fails on its N-th
/// command (0-based), as a libtorch error inside it would (tests/training/resume.rs).
const FAIL_AFTER_VARIABLE: &str = "WARPNET_DEVICE_FAILS_AT_COMMAND";

fn injected_failure() -> Option<usize> {
    std::env::var(FAIL_AFTER_VARIABLE).ok().and_then(|n| n.parse().ok())
}

/// Ends the process with the failed device's one line.
fn fail(name: &str, panic: &(dyn std::any::Any + Send)) -> ! {
    let message = match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
        (Some(text), _) => text.as_str(),
        (None, Some(text)) => text,
        (None, None) => "a panic without a message",
    };
    // libtorch's messages carry a C++ backtrace after their first line.
    let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or(message).trim();
    // The first failed device speaks and ends the process; another that fails meanwhile waits here.
    static FIRST: Once = Once::new();
    FIRST.call_once(|| {
        eprintln!("error: device {name} failed: {first}; training stopped (the last checkpoint is intact)");
        std::process::exit(EXIT_DEVICE_FAILED)
    });
    unreachable!("the first failure ends the process")
}

/// Installs, once, a panic hook that says nothing for device threads (their failure is reported by
/// [`fail`] in one line) and hands every other panic to the hook before it.
fn quiet_device_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let device = std::thread::current().name().is_some_and(|n| n.starts_with(THREAD_PREFIX));
            if !device {
                previous(info);
            }
        }));
    });
}

impl<C, R> Drop for Actor<C, R> {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's loop; then wait for it.
        let (closed, _) = channel();
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The caller's end of a device, whatever carries its messages: a thread of this process ([`Actor`])
/// or a device of another MPI rank (runtime/mpi/remote.rs). Each answers its commands in order.
pub trait Endpoint<C, R> {
    /// Sends a command without waiting for its reply.
    fn send(&self, command: C);
    /// The reply to the oldest command not yet answered.
    fn receive(&self) -> R;
}

/// A device, wherever it runs.
pub type Link<C, R> = Box<dyn Endpoint<C, R> + Send>;

impl<C: Send + 'static, R: Send + 'static> Endpoint<C, R> for Actor<C, R> {
    fn send(&self, command: C) {
        Actor::send(self, command)
    }

    fn receive(&self) -> R {
        Actor::receive(self)
    }
}
