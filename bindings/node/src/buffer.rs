//! The bounded buffer between a producer thread and a JS consumer, without any JS in it.
//!
//! [`crate::stream::MessageStream`] puts napi promises in front of it; keeping the buffer free of
//! napi types lets its rules (capacity, cancel, end, panics) be unit-tested without Node.
//!
//! Rules: [`Sink::send`] blocks while the buffer is full (a slow consumer bounds memory) and
//! fails at once after a cancel; [`Buffer::take`] hands over every buffered line at once (a fast
//! consumer is not held back); the first pending wake-up of the consumer runs as soon as there is
//! something to take; cancel drops what is buffered, wakes everyone and runs the producer's
//! canceller; the end of the producer (its result, or its panic) is delivered after its lines.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A callback that wakes a waiting consumer. Called once, outside the buffer's lock.
pub type Wake = Box<dyn FnOnce() + Send>;

/// Limits of the buffer. Default: 1024 lines or 1 MiB, whichever is reached first (a single
/// longer line is still accepted when the buffer is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Most lines buffered at once. Default: 1024.
    pub lines: usize,
    /// Most bytes buffered at once. Default: 1 MiB.
    pub bytes: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        // 1 MiB keeps a slow consumer's cost small next to a job's own memory, and is large
        // enough that one batch spreads the event-loop round trip over many lines.
        Capacity {
            lines: 1024,
            bytes: 1 << 20,
        }
    }
}

/// Why a stream ended early, as the JS error it becomes: `code` is the error's stable `code`
/// property (for example `ENGINE_UNREACHABLE`), `message` its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// The stable code JS sees as `error.code`.
    pub code: String,
    /// The message; never contains a secret.
    pub message: String,
}

impl StreamError {
    /// An error with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        StreamError {
            code: code.into(),
            message: message.into(),
        }
    }

    fn panicked() -> Self {
        StreamError::new("INTERNAL", "internal error: the job thread panicked")
    }
}

/// Returned by [`Sink::send`] once the consumer has cancelled: the producer should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// What [`Buffer::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Every buffered line, oldest first (at least one).
    Lines(Vec<String>),
    /// The producer ended well and everything was taken, or the consumer cancelled.
    End,
    /// The producer failed, and everything before the failure was taken.
    Failed(StreamError),
    /// Nothing yet.
    Nothing,
}

/// The buffer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines the producer has handed over.
    pub sent: u64,
    /// Lines taken by the consumer.
    pub delivered: u64,
    /// Lines buffered now.
    pub queued_lines: usize,
    /// Bytes buffered now.
    pub queued_bytes: usize,
    /// The most bytes ever buffered at once.
    pub max_queued_bytes: usize,
    /// Whether the producer has ended.
    pub finished: bool,
    /// Whether the consumer has cancelled.
    pub cancelled: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    stats: Stats,
    waiter: Option<Wake>,
    finished: Option<Result<(), StreamError>>,
    canceller: Option<Wake>,
    closed: Vec<Wake>,
}

/// The buffer shared by a [`Sink`] (producer) and a consumer.
pub struct Buffer {
    state: Mutex<State>,
    room: Condvar,
    capacity: Capacity,
}

impl Buffer {
    /// An empty buffer and the sink that fills it.
    pub fn new(capacity: Capacity) -> (Arc<Buffer>, Sink) {
        let buffer = Arc::new(Buffer {
            state: Mutex::new(State::default()),
            room: Condvar::new(),
            capacity,
        });
        let sink = Sink {
            buffer: buffer.clone(),
            finished: false,
        };
        (buffer, sink)
    }

    /// Runs `producer` on a new thread named `name`; its result, or its panic (as an `INTERNAL`
    /// error), ends the stream.
    pub fn spawn<F>(name: &str, capacity: Capacity, producer: F) -> std::io::Result<Arc<Buffer>>
    where
        F: FnOnce(&Sink) -> Result<(), StreamError> + Send + 'static,
    {
        let (buffer, sink) = Buffer::new(capacity);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| producer(&sink)));
                sink.finish(outcome.unwrap_or_else(|_| Err(StreamError::panicked())));
            })?;
        Ok(buffer)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code that can panic runs under this lock (callbacks run after it is released), so
        // a poisoned lock still guards consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes every buffered line, or says how the stream ended, or that nothing is there yet.
    pub fn take(&self) -> Taken {
        let mut state = self.lock();
        if !state.queue.is_empty() {
            let lines: Vec<String> = state.queue.drain(..).collect();
            state.stats.queued_bytes = 0;
            state.stats.delivered += lines.len() as u64;
            drop(state);
            self.room.notify_all();
            return Taken::Lines(lines);
        }
        if state.stats.cancelled {
            return Taken::End;
        }
        match &state.finished {
            Some(Ok(())) => Taken::End,
            Some(Err(e)) => Taken::Failed(e.clone()),
            None => Taken::Nothing,
        }
    }

    /// Runs `wake` as soon as [`Buffer::take`] would find something: at once when it would now.
    /// Fails (returning `wake` unrun) when an earlier wake-up is still pending.
    pub fn wait(&self, wake: Wake) -> Result<(), Wake> {
        let mut state = self.lock();
        if state.waiter.is_some() {
            return Err(wake);
        }
        if state.queue.is_empty() && state.finished.is_none() && !state.stats.cancelled {
            state.waiter = Some(wake);
        } else {
            drop(state);
            wake();
        }
        Ok(())
    }

    /// Whether a consumer's wake-up is pending.
    pub fn is_waiting(&self) -> bool {
        self.lock().waiter.is_some()
    }

    /// Runs `done` once the producer has ended: at once when it has.
    pub fn when_finished(&self, done: Wake) {
        let mut state = self.lock();
        if state.finished.is_some() {
            drop(state);
            done();
        } else {
            state.closed.push(done);
        }
    }

    /// Stops the stream: drops buffered lines, wakes a waiting consumer (it will take
    /// [`Taken::End`]), unblocks the producer and runs its canceller. Idempotent.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.stats.cancelled = true;
        state.queue.clear();
        state.stats.queued_bytes = 0;
        let canceller = state.canceller.take();
        let waiter = state.waiter.take();
        drop(state);
        self.room.notify_all();
        if let Some(waiter) = waiter {
            waiter();
        }
        if let Some(canceller) = canceller {
            // A canceller runs on the consumer's (JS) thread: a panic in it must not take the
            // process down, and the stream is cancelled whatever it did.
            let _ = catch_unwind(AssertUnwindSafe(canceller));
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let state = self.lock();
        Stats {
            queued_lines: state.queue.len(),
            finished: state.finished.is_some(),
            ..state.stats
        }
    }
}

/// The producer's end of a [`Buffer`]. Dropping it ends the stream (as a success, or as an
/// `INTERNAL` error when the thread is panicking).
pub struct Sink {
    buffer: Arc<Buffer>,
    finished: bool,
}

impl Sink {
    /// Hands one line to the consumer. Blocks while the buffer is full; returns `Err(Cancelled)`
    /// at once when the consumer has cancelled (the line is dropped): the producer should stop.
    pub fn send(&self, line: String) -> Result<(), Cancelled> {
        let capacity = self.buffer.capacity;
        let mut state = self.buffer.lock();
        loop {
            if state.stats.cancelled {
                return Err(Cancelled);
            }
            let fits = state.queue.len() < capacity.lines
                && state.stats.queued_bytes + line.len() <= capacity.bytes;
            if state.queue.is_empty() || fits {
                break;
            }
            state = self
                .buffer
                .room
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.stats.queued_bytes += line.len();
        state.stats.max_queued_bytes = state.stats.max_queued_bytes.max(state.stats.queued_bytes);
        state.stats.sent += 1;
        state.queue.push_back(line);
        let waiter = state.waiter.take();
        drop(state);
        if let Some(waiter) = waiter {
            waiter();
        }
        Ok(())
    }

    /// Whether the consumer has cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.buffer.lock().stats.cancelled
    }

    /// Registers what a cancel must do to reach this producer where `send` cannot (for example,
    /// kill the job so that a blocking read returns). It runs once, on the consumer's (JS)
    /// thread, so it must not block; at once if the consumer has already cancelled. A later
    /// call replaces an earlier canceller.
    pub fn on_cancel(&self, canceller: impl FnOnce() + Send + 'static) {
        let mut state = self.buffer.lock();
        if state.stats.cancelled {
            drop(state);
            let _ = catch_unwind(AssertUnwindSafe(canceller));
        } else {
            state.canceller = Some(Box::new(canceller));
        }
    }

    /// Ends the stream: `Ok` after the buffered lines; `Err` makes the consumer's take after
    /// them a [`Taken::Failed`].
    pub fn finish(mut self, result: Result<(), StreamError>) {
        self.end(result);
    }

    fn end(&mut self, result: Result<(), StreamError>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut state = self.buffer.lock();
        state.finished = Some(result);
        state.canceller = None;
        let waiter = state.waiter.take();
        let closed = std::mem::take(&mut state.closed);
        drop(state);
        if let Some(waiter) = waiter {
            waiter();
        }
        for done in closed {
            done();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let result = if std::thread::panicking() {
            Err(StreamError::panicked())
        } else {
            Ok(())
        };
        self.end(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn two_lines() -> Capacity {
        Capacity {
            lines: 2,
            bytes: 1 << 20,
        }
    }

    fn counter() -> (Arc<AtomicUsize>, impl Fn() -> Wake) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        (count, move || {
            let c = c.clone();
            Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }) as Wake
        })
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn lines_arrive_in_order_in_batches_then_the_end() {
        let (buffer, sink) = Buffer::new(Capacity::default());
        assert_eq!(buffer.take(), Taken::Nothing);
        for i in 0..3 {
            sink.send(format!("{i}")).expect("not cancelled");
        }
        assert_eq!(
            buffer.take(),
            Taken::Lines(vec!["0".into(), "1".into(), "2".into()])
        );
        sink.send("3".into()).expect("not cancelled");
        sink.finish(Ok(()));
        assert_eq!(
            buffer.take(),
            Taken::Lines(vec!["3".into()]),
            "lines come before the end"
        );
        assert_eq!(buffer.take(), Taken::End);
        assert_eq!(buffer.stats().delivered, 4);
    }

    #[test]
    fn a_failure_comes_after_the_lines_sent_before_it() {
        let (buffer, sink) = Buffer::new(Capacity::default());
        sink.send("a".into()).expect("not cancelled");
        sink.finish(Err(StreamError::new("X", "it broke")));
        assert_eq!(buffer.take(), Taken::Lines(vec!["a".into()]));
        assert_eq!(
            buffer.take(),
            Taken::Failed(StreamError::new("X", "it broke"))
        );
    }

    #[test]
    fn a_waiting_consumer_is_woken_once_by_a_line_and_at_once_when_lines_are_there() {
        let (buffer, sink) = Buffer::new(Capacity::default());
        let (woken, wake) = counter();
        buffer
            .wait(wake())
            .map_err(|_| ())
            .expect("no earlier waiter");
        assert!(buffer.is_waiting());
        assert!(buffer.wait(wake()).is_err(), "a second waiter is refused");
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        sink.send("a".into()).expect("not cancelled");
        sink.send("b".into()).expect("not cancelled");
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        buffer
            .wait(wake())
            .map_err(|_| ())
            .expect("no earlier waiter");
        assert_eq!(
            woken.load(Ordering::SeqCst),
            2,
            "lines are there: woken at once"
        );
    }

    #[test]
    fn the_end_wakes_a_waiting_consumer_and_finished_callbacks() {
        let (buffer, sink) = Buffer::new(Capacity::default());
        let (woken, wake) = counter();
        buffer
            .wait(wake())
            .map_err(|_| ())
            .expect("no earlier waiter");
        buffer.when_finished(wake());
        drop(sink);
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert_eq!(buffer.take(), Taken::End);
        buffer.when_finished(wake());
        assert_eq!(woken.load(Ordering::SeqCst), 3, "after the end: at once");
    }

    #[test]
    fn a_full_buffer_blocks_the_producer_until_a_take() {
        let (buffer, sink) = Buffer::new(two_lines());
        let producer = std::thread::spawn(move || {
            for i in 0..5 {
                sink.send(format!("{i}")).expect("not cancelled");
            }
        });
        wait_until("two lines are buffered", || buffer.stats().sent == 2);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(buffer.stats().sent, 2, "the producer waits at the capacity");
        let mut got = Vec::new();
        while got.len() < 5 {
            if let Taken::Lines(lines) = buffer.take() {
                assert!(lines.len() <= 2);
                got.extend(lines);
            }
        }
        producer.join().expect("the producer does not panic");
        assert_eq!(got, ["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn cancel_unblocks_a_full_producer_and_drops_what_is_buffered() {
        let (buffer, sink) = Buffer::new(two_lines());
        let producer = std::thread::spawn(move || {
            let mut sent = 0;
            while sink.send(format!("{sent}")).is_ok() {
                sent += 1;
            }
            sent
        });
        wait_until("two lines are buffered", || buffer.stats().sent == 2);
        buffer.cancel();
        assert_eq!(producer.join().expect("no panic"), 2);
        let stats = buffer.stats();
        assert!(stats.cancelled && stats.finished);
        assert_eq!((stats.queued_lines, stats.queued_bytes), (0, 0));
        assert_eq!(buffer.take(), Taken::End);
    }

    #[test]
    fn the_byte_limit_holds_but_one_longer_line_still_passes() {
        let (buffer, sink) = Buffer::new(Capacity {
            lines: 100,
            bytes: 10,
        });
        sink.send("x".repeat(50))
            .expect("an empty buffer takes any line");
        assert_eq!(buffer.stats().max_queued_bytes, 50);
        let producer = std::thread::spawn(move || sink.send("y".into()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!producer.is_finished(), "a second line waits for room");
        buffer.cancel();
        assert_eq!(producer.join().expect("no panic"), Err(Cancelled));
    }

    #[test]
    fn cancel_runs_the_canceller_once_and_a_late_canceller_at_once() {
        let (buffer, sink) = Buffer::new(two_lines());
        let (ran, wake) = counter();
        let first = wake();
        sink.on_cancel(first);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        buffer.cancel();
        buffer.cancel();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(sink.is_cancelled());
        let late = wake();
        sink.on_cancel(late);
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_canceller_is_contained() {
        let (buffer, sink) = Buffer::new(two_lines());
        sink.on_cancel(|| panic!("canceller panics"));
        buffer.cancel();
        assert!(sink.is_cancelled());
    }

    #[test]
    fn a_panicking_producer_ends_the_stream_with_an_internal_error() {
        let buffer = Buffer::spawn("test", two_lines(), |sink| {
            sink.send("before".into()).expect("not cancelled");
            panic!("producer panics")
        })
        .expect("a thread starts");
        wait_until("the stream ends", || buffer.stats().finished);
        assert_eq!(buffer.take(), Taken::Lines(vec!["before".into()]));
        match buffer.take() {
            Taken::Failed(e) => assert_eq!(e.code, "INTERNAL"),
            other => panic!("expected an INTERNAL failure, got {other:?}"),
        }
    }
}
