//! Serial ports as pseudo-terminals, and the two ends of a line: the device's UART writer
//! ([`DeviceConnection`], paced to the baud rate, since a pty moves bytes as fast as they come)
//! and the gateway's port ([`GatewayPort`], the pty's master, read as the bytes arrive).
//!
//! The gateway opens each pair ([`GatewayPort::open`]), sets the port raw at the baud rate as a
//! gateway's `serial.Serial(port, 9600)` would, and keeps its own descriptor of the device side
//! open, so the port never hangs up while a device is between connections; the device opens
//! the device side by its path (`/dev/pts/N`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::codec::{encode_line, Uart};
use crate::link::{LinkError, LinkStats};
use crate::Reading;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the port's path"))?;
    // SAFETY: `c` is a valid C string; the descriptor returned is owned by nobody else.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) })?;
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The termios speed constant of a standard baud rate; `None` for any other (the pty keeps its
/// speed: it does not enforce one anyway).
fn speed_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        1_200 => libc::B1200,
        2_400 => libc::B2400,
        4_800 => libc::B4800,
        9_600 => libc::B9600,
        19_200 => libc::B19200,
        38_400 => libc::B38400,
        57_600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        921_600 => libc::B921600,
        _ => return None,
    })
}

/// Sets `fd`, a terminal, raw (no echo, no line editing, no `\n` to `\r\n`), 8N1 at `baud`.
fn make_raw(fd: RawFd, baud: u32) -> io::Result<()> {
    // SAFETY: termios is plain old data, filled by tcgetattr before use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    check(unsafe { libc::tcgetattr(fd, &mut t) })?;
    // SAFETY: `t` is a valid termios.
    unsafe { libc::cfmakeraw(&mut t) };
    t.c_cflag &= !(libc::CSTOPB | libc::PARENB | libc::CSIZE);
    t.c_cflag |= libc::CS8 | libc::CLOCAL | libc::CREAD;
    if let Some(speed) = speed_constant(baud) {
        check(unsafe { libc::cfsetspeed(&mut t, speed) })?;
    }
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) })?;
    Ok(())
}

/// `fd` watched by the runtime's reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns the descriptor, which stays open and the same until it drops.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// One serial port on the gateway's side: the master of a pseudo-terminal, read as bytes come.
pub struct GatewayPort {
    master: AsyncFd<OwnedFd>,
    /// The gateway's own descriptor of the device side, kept so the port does not hang up
    /// (EIO on the master) while no device holds it open.
    _device_side: OwnedFd,
    path: PathBuf,
}

impl GatewayPort {
    /// Opens a pseudo-terminal pair, sets it raw, 8N1 at `baud`. Needs a tokio runtime.
    pub fn open(baud: u32) -> io::Result<GatewayPort> {
        // SAFETY: plain libc calls on a descriptor this function owns.
        let fd = check(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) })?;
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: FD_CLOEXEC on our own descriptor.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        check(unsafe { libc::grantpt(fd) })?;
        check(unsafe { libc::unlockpt(fd) })?;
        let mut name = [0 as libc::c_char; 128];
        let ret = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        // SAFETY: ptsname_r wrote a NUL-terminated name.
        let path = PathBuf::from(
            unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        );
        let device_side = open_path(&path, libc::O_RDWR)?;
        make_raw(device_side.as_raw_fd(), baud)?;
        set_nonblocking(master.as_raw_fd())?;
        Ok(GatewayPort {
            master: register(master)?,
            _device_side: device_side,
            path,
        })
    }

    /// The device side's path (`/dev/pts/N`), which the device opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what has come, at least one byte, waiting until some has.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            let read = guard.try_io(|fd| {
                // SAFETY: `buf` is valid for `buf.len()` bytes.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

impl GatewayPort {
    /// Reads what the port holds now without waiting: 0 when it holds nothing.
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            e => Err(e),
        }
    }
}

/// The device's end of a serial line: a UART writing each reading as a line, one byte after
/// another at the baud rate. A line starts when it is sent or, if the one before is still on
/// the wire, when that one ends (a UART's transmit buffer), and its last byte reaches the port
/// no earlier than `len × 10 / baud` after its start.
pub struct DeviceConnection {
    port: AsyncFd<OwnedFd>,
    uart: Uart,
    /// When the wire is free: the end of the last line's stop bit, CLOCK_MONOTONIC ns.
    free_ns: u64,
    bytes_sent: u64,
    write_timeout: Duration,
    line: Vec<u8>,
}

impl DeviceConnection {
    /// Opens the serial port at `path` (the device side of a gateway's pty) at `baud`.
    pub fn connect(path: &Path, baud: u32, write_timeout: Duration) -> Result<Self, LinkError> {
        let fd = open_path(path, libc::O_WRONLY | libc::O_NONBLOCK).map_err(|e| {
            LinkError::Connect(io::Error::new(
                e.kind(),
                format!("opening the serial port {}: {e}", path.display()),
            ))
        })?;
        Ok(DeviceConnection {
            port: register(fd).map_err(LinkError::Connect)?,
            uart: Uart::new(baud),
            free_ns: 0,
            bytes_sent: 0,
            write_timeout,
            line: Vec::with_capacity(160),
        })
    }

    /// Writes `reading`'s line at the baud rate; returns its length, newline included, once
    /// its last byte is written. Each write is bounded by the write timeout.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        encode_line(reading, &mut line);
        let result = self.write_paced(&line).await;
        self.line = line;
        result
    }

    async fn write_paced(&mut self, line: &[u8]) -> Result<usize, LinkError> {
        let start = crate::clock::now_ns().max(self.free_ns);
        let len = line.len() as u64;
        let mut written = 0u64;
        while written < len {
            let now = crate::clock::now_ns();
            let done = self.uart.bytes_done(start, now).min(len);
            if done > written {
                let chunk = &line[written as usize..done as usize];
                tokio::time::timeout(self.write_timeout, self.write_all(chunk))
                    .await
                    .map_err(|_| LinkError::WriteTimeout(self.write_timeout))?
                    .map_err(|e| LinkError::Write(e.to_string()))?;
                written = done;
                self.bytes_sent += chunk.len() as u64;
                continue;
            }
            let next = self.uart.byte_done_ns(start, written);
            tokio::time::sleep(Duration::from_nanos(next.saturating_sub(now))).await;
        }
        self.free_ns = start + self.uart.wire_ns(len);
        Ok(line.len())
    }

    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.port.writable().await?;
            let wrote = guard.try_io(|fd| {
                // SAFETY: `bytes` is valid for its length.
                let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match wrote {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Bytes written to the line so far; a serial line has no TCP counters.
    pub fn stats(&self) -> LinkStats {
        LinkStats::new(self.bytes_sent, 0, None)
    }

    /// Closes the port. A line has no close handshake.
    pub async fn close(self) -> LinkStats {
        self.stats()
    }

    /// A board losing power mid-line leaves the port as it is: nothing more is written.
    pub fn vanish(self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::codec::{decode_line, line_len, LineSplitter, Piece, MAX_LINE};

    #[tokio::test]
    async fn a_line_crosses_the_pty_whole_and_no_sooner_than_the_uart_allows() {
        let port = GatewayPort::open(115_200).unwrap();
        let mut device =
            DeviceConnection::connect(port.path(), 115_200, Duration::from_secs(5)).unwrap();
        let reading = Reading {
            device_id: 3,
            seq: 9,
            scheduled_us: 1_000_000,
            temperature_dc: 230,
            humidity_dpct: 410,
            pressure_pa: 100_900,
            air_quality_dppm: 3_995,
            boot: 0,
        };
        let started = crate::clock::now_ns();
        let sent = device.send(&reading).await.unwrap();
        let finished = crate::clock::now_ns();
        assert_eq!(sent, line_len(&reading));
        assert!(finished - started >= Uart::new(115_200).wire_ns(sent as u64));
        assert_eq!(device.stats().app_bytes_sent, sent as u64);
        let mut splitter = LineSplitter::new(MAX_LINE);
        let mut lines = Vec::new();
        let mut buf = [0u8; 256];
        while lines.is_empty() {
            let n = tokio::time::timeout(Duration::from_secs(60), port.read(&mut buf))
                .await
                .expect("the line arrives")
                .unwrap();
            splitter.push(&buf[..n], |p| match p {
                Piece::Line { text, .. } => lines.push(decode_line(text).unwrap()),
                Piece::Overlong { .. } => panic!("overlong"),
            });
        }
        assert_eq!(lines, [reading]);
    }
}
