//! What a run ran on: CPU, kernel, OS, host, and the fleetbench build, for the results header.
//!
//! [`describe`] reads it all from `/proc`, `/etc/os-release` and `uname`. Nothing here fails: a
//! fact that cannot be read becomes `"unknown"` (or `None`), since a run is worth keeping even if,
//! say, `/etc/os-release` is missing. Comparing machines is left to the report. The type,
//! [`Machine`], is part of the results model in [`reports::results`], re-exported here.
pub use reports::results::Machine;
use reports::results::UNKNOWN;

/// Describes this machine and this build.
pub fn describe() -> Machine {
    let uname = Uname::get();
    Machine {
        cpu_model: read("/proc/cpuinfo")
            .and_then(|text| cpu_model(&text))
            .unwrap_or_else(|| UNKNOWN.to_owned()),
        cores: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        kernel: uname
            .as_ref()
            .map_or_else(|| UNKNOWN.to_owned(), |u| u.release.clone()),
        hostname: uname
            .as_ref()
            .map_or_else(|| UNKNOWN.to_owned(), |u| u.nodename.clone()),
        os: read("/etc/os-release")
            .or_else(|| read("/usr/lib/os-release"))
            .and_then(|text| os_name(&text))
            .or_else(|| uname.as_ref().map(|u| u.sysname.clone()))
            .unwrap_or_else(|| UNKNOWN.to_owned()),
        fleetbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_revision: env!("FLEETBENCH_GIT_REVISION").to_owned(),
        tcp_timestamps: read("/proc/sys/net/ipv4/tcp_timestamps").map(|v| v.trim() != "0"),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The first `model name` of `/proc/cpuinfo` (x86 and most others); arm64 kernels may not
/// have one, and then the CPU is unknown.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        (name.trim() == "model name" && !value.is_empty()).then(|| value.to_owned())
    })
}

/// `PRETTY_NAME` of an os-release file, else `NAME`, unquoted.
fn os_name(os_release: &str) -> Option<String> {
    let value = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let value = unquote(value.trim());
            (!value.is_empty()).then_some(value)
        })
    };
    value("PRETTY_NAME").or_else(|| value("NAME"))
}

/// Removes shell-style quotes: os-release values are `"..."`, `'...'` or bare, and backslashes
/// escape `"`, `\`, `$` and backquote inside double quotes.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(escaped @ ('"' | '\\' | '$' | '`')) => out.push(escaped),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The parts of `uname(2)` we report.
struct Uname {
    sysname: String,
    nodename: String,
    release: String,
}

impl Uname {
    fn get() -> Option<Uname> {
        // SAFETY: utsname is plain old data; all zeroes is a valid value.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `uts` is a valid utsname to write to.
        if unsafe { libc::uname(&mut uts) } != 0 {
            return None;
        }
        Some(Uname {
            sysname: field(&uts.sysname),
            nodename: field(&uts.nodename),
            release: field(&uts.release),
        })
    }
}

/// A NUL-terminated utsname field as a string (the kernel always terminates them).
fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_machine() {
        let m = describe();
        println!("{m:#?}");
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty() && m.kernel != UNKNOWN, "{m:?}");
        assert!(!m.hostname.is_empty());
        assert_eq!(m.fleetbench_version, env!("CARGO_PKG_VERSION"));
        assert!(!m.git_revision.is_empty());
        // Linux always has this file, outside of unusual containers.
        assert!(m.tcp_timestamps.is_some());
    }

    #[test]
    fn cpu_model_line() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 85\n\
                       model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\n\
                       model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n"), None);
    }

    #[test]
    fn os_release_names() {
        let ubuntu = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\n";
        assert_eq!(os_name(ubuntu).as_deref(), Some("Ubuntu 24.04.1 LTS"));
        assert_eq!(os_name("NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(
            os_name("PRETTY_NAME='Odd \"one\"'\n").as_deref(),
            Some("Odd \"one\"")
        );
        assert_eq!(
            os_name("PRETTY_NAME=\"Say \\\"hi\\\" \\$HOME\"\n").as_deref(),
            Some("Say \"hi\" $HOME")
        );
        assert_eq!(os_name("ID=debian\n"), None);
    }

    #[test]
    fn schema_and_json() {
        let schema = serde_json::to_value(schemars::schema_for!(Machine)).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        assert!(properties.contains_key("cpu_model") && properties.contains_key("tcp_timestamps"));
        let m = describe();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Machine>(&json).unwrap(), m);
    }
}
