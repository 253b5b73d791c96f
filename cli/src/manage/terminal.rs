//! Single keys while `status --watch` redraws: `q` stops it without Enter.
//!
//! Only when standard input is a terminal (a script on standard input is not read). The
//! terminal is put in non-canonical mode without echo for the watch and restored when the
//! [`QuitKeys`] handle drops; Ctrl-C still raises SIGINT, which the watch also ends on.
//! A thread polls standard input with a short timeout (so it stops promptly and leaves no
//! reader behind to steal the line editor's keys) and reads raw bytes, never through std's
//! buffered `Stdin`, whose buffer the line editor would not see.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{LocalFlags, SetArg, Termios, tcgetattr, tcsetattr};
use tokio::sync::Notify;

/// How often the reader thread checks whether it should stop.
const POLL_MILLIS: u16 = 100;

/// A `q` (or `Q`) pressed on the terminal.
#[derive(Debug)]
pub struct QuitKeys {
    pressed: Arc<Notify>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    saved: Option<Termios>,
}

impl QuitKeys {
    /// Starts listening, or `None` when standard input is not a terminal.
    pub fn start() -> Option<QuitKeys> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.local_flags
                .remove(LocalFlags::ICANON | LocalFlags::ECHO);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        let pressed = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (pressed, stop) = (pressed.clone(), stop.clone());
            std::thread::Builder::new()
                .name("watch-keys".into())
                .spawn(move || read_keys(&pressed, &stop))
                .ok()
        };
        Some(QuitKeys {
            pressed,
            stop,
            reader,
            saved,
        })
    }

    /// Resolves when `q` is pressed.
    pub async fn pressed(&self) {
        self.pressed.notified().await;
    }
}

fn read_keys(pressed: &Notify, stop: &AtomicBool) {
    let stdin = std::io::stdin();
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(POLL_MILLIS)) {
            Ok(0) => continue,
            Ok(_) => {
                let mut buf = [0u8; 16];
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if buf[..n].iter().any(|b| matches!(b, b'q' | b'Q')) {
                            // notify_one keeps the permit if the watch is between redraws.
                            pressed.notify_one();
                            return;
                        }
                    }
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

impl Drop for QuitKeys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}
