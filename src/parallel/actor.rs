//! A thread that owns its state and answers commands in order: the shape of every device of the
//! executor (tch tensors may move between threads but not be shared, so each device's tensors live on
//! its own thread and travel by value).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use super::mpi::remote::Remote;
use super::mpi::wire::Wire;

/// The caller's end of a command thread.
pub struct Actor<C, R> {
    commands: Sender<C>,
    replies: Receiver<R>,
    thread: Option<JoinHandle<()>>,
}

impl<C: Send + 'static, R: Send + 'static> Actor<C, R> {
    /// Starts a thread that builds its state with `start` and then answers each command with `handle`,
    /// until the actor is dropped.
    pub fn spawn<S>(
        start: impl FnOnce() -> S + Send + 'static,
        mut handle: impl FnMut(&mut S, C) -> R + Send + 'static,
    ) -> Self {
        let (commands, inbox) = channel::<C>();
        let (outbox, replies) = channel();
        let thread = std::thread::spawn(move || {
            let mut state = start();
            for command in inbox {
                if outbox.send(handle(&mut state, command)).is_err() {
                    break;
                }
            }
        });
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

/// The caller's end of a device: a thread of this process, or a device of another MPI rank reached
/// through messages (parallel/mpi/remote.rs). Both answer the same commands in the same order.
pub enum Link<C, R> {
    Thread(Actor<C, R>),
    Rank(Remote<C, R>),
}

impl<C: Wire + Send + 'static, R: Wire + Send + 'static> Link<C, R> {
    pub fn send(&self, command: C) {
        match self {
            Link::Thread(actor) => actor.send(command),
            Link::Rank(remote) => remote.send(command),
        }
    }

    pub fn receive(&self) -> R {
        match self {
            Link::Thread(actor) => actor.receive(),
            Link::Rank(remote) => remote.receive(),
        }
    }
}
