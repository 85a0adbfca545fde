//! Terminals as async byte streams: serial devices (a real modem on `/dev/ttyS0` or `/dev/ttyUSB0`) and
//! pseudo-terminals (how the simulated modem is served to programs such as mgetty). Unix only.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{
    BaudRate, ControlFlags, SetArg, cfmakeraw, cfsetispeed, cfsetospeed, tcgetattr, tcsetattr,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A terminal device opened for non-blocking, raw (8N1, no echo, no line editing) I/O.
#[derive(Debug)]
pub struct Tty {
    fd: AsyncFd<OwnedFd>,
}

/// A pseudo-terminal pair: the simulator serves the master; host programs open [`Pty::path`].
#[derive(Debug)]
pub struct Pty {
    /// The master side, as a stream.
    pub master: Tty,
    /// The device path of the slave side (e.g. `/dev/pts/3`).
    pub path: PathBuf,
    /// The slave side, kept open so the master does not read end-of-file while no program has it open.
    pub slave: OwnedFd,
}

fn raw(fd: impl AsFd, speed: Option<BaudRate>) -> io::Result<()> {
    let mut t = tcgetattr(&fd)?;
    cfmakeraw(&mut t);
    // Ignore modem control lines (a pseudo-terminal has none) and enable the receiver.
    t.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
    if let Some(speed) = speed {
        cfsetispeed(&mut t, speed)?;
        cfsetospeed(&mut t, speed)?;
    }
    tcsetattr(&fd, SetArg::TCSANOW, &t)?;
    Ok(())
}

fn non_blocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Tty {
    /// Opens a serial device in raw mode at 115200 bit/s (a pseudo-terminal ignores the speed).
    /// Must be called within a tokio runtime.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_flags())
            .open(path)?;
        let fd = OwnedFd::from(file);
        raw(&fd, Some(BaudRate::B115200))?;
        Self::from_fd(fd)
    }

    // `AsyncFd::new` is deprecated because it accepts any raw descriptor, which may be closed or
    // replaced behind its back. Here it owns an `OwnedFd` that nothing else can close or replace, which
    // is the use it stays sound for; the replacement (`register`) is `unsafe`, which this workspace
    // forbids.
    #[allow(deprecated)]
    fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        non_blocking(&fd)?;
        Ok(Self {
            fd: AsyncFd::new(fd)?,
        })
    }
}

fn libc_flags() -> i32 {
    (OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits()
}

impl Pty {
    /// Creates a pseudo-terminal pair with both sides raw. Must be called within a tokio runtime.
    pub fn new() -> io::Result<Self> {
        let pair = nix::pty::openpty(None, None)?;
        raw(&pair.slave, None)?;
        let path = nix::unistd::ttyname(&pair.slave)?;
        Ok(Self {
            master: Tty::from_fd(pair.master)?,
            path,
            slave: pair.slave,
        })
    }
}

impl AsyncRead for Tty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from))
            {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // A pseudo-terminal master reads EIO while no program has the slave open.
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Tty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
