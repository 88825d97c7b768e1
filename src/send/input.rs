//! What `send` sends, as words the connection loop takes when it has room: a message from the
//! command line, or stdin read by a thread of its own.
//!
//! Reading stdin blocks (a terminal, a pipe) and cannot be polled portably, so a thread reads it
//! into a small bounded channel ([`WORDS_WAITING`] chunks) and wakes the loop's poll through a
//! [`Waker`] after each word. The loop takes words only while it has room in flight, so a fast
//! stdin waits on the channel and memory stays bounded however large the input.

use std::{
    io::{self, Read},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, TryRecvError, sync_channel},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use mio::Waker;

use super::exchange::CHUNK;

/// Chunks read from stdin that may wait for the loop to take them.
const WORDS_WAITING: usize = 2;
/// While the loop waits for the input's word after the server closed, how often it looks
/// whether the thread went back to waiting on stdin (then no word is coming soon).
const WORD_TICK: Duration = Duration::from_millis(10);

/// One word of the input, in order.
pub(crate) enum Word {
    /// The next bytes to send.
    Chunk(Vec<u8>),
    /// The input ended: everything was handed over.
    End,
    /// Stdin could not be read.
    Failed(io::Error),
}

/// The input's word after the server closed.
pub(crate) enum AfterClose {
    /// A word that was on its way.
    Word(Word),
    /// The thread waits on stdin: it has not ended, and no word is coming until it gives one.
    StdinOpen,
    /// No word within the wait.
    Silent,
}

/// The source of what is sent.
pub(crate) enum Input {
    /// A message from the command line: one chunk, then the end.
    Message(Option<Vec<u8>>),
    /// Stdin, read by a thread.
    Stdin {
        /// The thread's words, in order.
        words: Receiver<Word>,
        /// The thread is inside a read of stdin (set just before, cleared just after).
        reading: Arc<AtomicBool>,
        /// Held as long as the loop runs: closing a waker's descriptor takes its pending
        /// wake-up out of the poll, so the thread's last word (the end) could go unnoticed.
        _waker: Arc<Waker>,
    },
}

impl Input {
    /// The message, sent as one chunk.
    pub(crate) fn message(message: Vec<u8>) -> Self {
        Input::Message(Some(message))
    }

    /// Stdin, read by a thread that wakes `waker` after each word. The thread ends after the
    /// last word, or when the loop is gone; one blocked on a stdin that never ends ends with
    /// the process.
    pub(crate) fn stdin(waker: Waker) -> Self {
        let (tx, words) = sync_channel(WORDS_WAITING);
        let reading = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reading);
        let waker = Arc::new(waker);
        let kept = Arc::clone(&waker);
        thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut chunk = vec![0; CHUNK];
                flag.store(true, Ordering::SeqCst);
                let read = stdin.read(&mut chunk);
                flag.store(false, Ordering::SeqCst);
                let word = match read {
                    Ok(0) => Word::End,
                    Ok(n) => {
                        chunk.truncate(n);
                        Word::Chunk(chunk)
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => Word::Failed(err),
                };
                let last = !matches!(word, Word::Chunk(_));
                // An error means the loop is gone: it has its own reason.
                if tx.send(word).is_err() {
                    return;
                }
                // A failed wake leaves the loop to find the word at its next event.
                let _ = waker.wake();
                if last {
                    return;
                }
            }
        });
        Input::Stdin {
            words,
            reading,
            _waker: kept,
        }
    }

    /// The next word if there is one now.
    pub(crate) fn try_next(&mut self) -> Result<Option<Word>> {
        match self {
            Input::Message(message) => Ok(Some(message.take().map_or(Word::End, Word::Chunk))),
            Input::Stdin { words, .. } => match words.try_recv() {
                Ok(word) => Ok(Some(word)),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Disconnected) => {
                    bail!("the thread reading stdin stopped without saying why")
                }
            },
        }
    }

    /// The next word once the server has closed: at once if there is one, [`AfterClose::StdinOpen`]
    /// while the thread waits on stdin, else the word on its way (the thread is between a read
    /// and its word), waiting at most until `deadline`.
    pub(crate) fn after_close(&mut self, deadline: Instant) -> Result<AfterClose> {
        loop {
            if let Some(word) = self.try_next()? {
                return Ok(AfterClose::Word(word));
            }
            let Input::Stdin { words, reading, .. } = self else {
                // A message always has a word.
                return Ok(AfterClose::Silent);
            };
            if reading.load(Ordering::SeqCst) {
                return Ok(AfterClose::StdinOpen);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(AfterClose::Silent);
            }
            match words.recv_timeout(left.min(WORD_TICK)) {
                Ok(word) => return Ok(AfterClose::Word(word)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the thread reading stdin stopped without saying why")
                }
            }
        }
    }
}
