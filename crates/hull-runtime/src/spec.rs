//! The OCI runtime configuration (`config.json`, runtime-spec 1.0) of a build step's container,
//! with Docker's defaults (moby `oci/defaults.go`, BuildKit's executor).
//!
//! Plain serde structs named after the runtime-spec sections, holding only the fields hull sets:
//! the `oci-spec` crate's builders would add `derive_builder`/`getset`/`strum` to the build for
//! the same JSON, and a fixed subset reads more plainly in a diff of this file.

use serde::Serialize;

use crate::user::ExecUser;
use crate::{MountSource, Network, RunSpec};

/// The PATH a process gets when its environment has none (Docker's and BuildKit's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname of a build container when none is given (what Docker's builder uses, so that
/// Dockerfiles see the same name under hull).
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// Docker's default capability set (moby `caps.DefaultCapabilities`): as a bit mask, a root
/// process's `CapEff` is `00000000a80425fb`.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths Docker hides from containers (bind-mounted over with `/dev/null` or an empty tmpfs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker remounts read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `config.json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub linux: Linux,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
}

/// The user namespace of a container started by a user other than root: the caller's uid and
/// gid become 0 inside; subordinate ranges (`/etc/subuid`, `/etc/subgid`, applied by runc with
/// `newuidmap`/`newgidmap`) map 1 and up. Without them only root exists inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
}

impl UserNamespace {
    /// Whether `uid` (a container id) is mapped.
    pub fn maps_uid(&self, uid: u32) -> bool {
        maps(&self.uid_mappings, uid)
    }

    /// Whether `gid` (a container id) is mapped.
    pub fn maps_gid(&self, gid: u32) -> bool {
        maps(&self.gid_mappings, gid)
    }
}

fn maps(m: &[IdMapping], id: u32) -> bool {
    m.iter()
        .any(|m| id >= m.container_id && id - m.container_id < m.size)
}

/// Files the runtime provides at `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, as host
/// paths (in the bundle directory).
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: String,
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_string()).collect()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.to_string(),
        kind: kind.to_string(),
        source: source.to_string(),
        options: strings(options),
    }
}

/// The process environment: `env` with `PATH` and `HOME` added when missing (as Docker does).
pub fn process_env(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    let has = |k: &str| {
        env.iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == k)
    };
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

/// The container configuration for `run`, as `user`, inside `userns` when given.
pub fn build(
    run: &RunSpec,
    user: &ExecUser,
    userns: Option<&UserNamespace>,
    etc: &EtcFiles,
) -> Spec {
    let caps = strings(DEFAULT_CAPABILITIES);
    let mut namespaces = vec!["pid", "ipc", "uts", "mount"];
    if run.network == Network::None {
        namespaces.push("network");
    }
    if userns.is_some() {
        namespaces.push("user");
    }
    let hostname = run
        .hostname
        .clone()
        .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string());

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ];
    let mut devpts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    // gid 5 (tty) exists inside only when mapped
    if userns.is_none_or(|ns| ns.maps_gid(5)) {
        devpts.push("gid=5");
    }
    mounts.push(mount("/dev/pts", "devpts", "devpts", &devpts));
    if userns.is_some() && run.network == Network::Host {
        // sysfs can only be mounted by the owner of the network namespace: a user namespace
        // sharing the host's network binds the host's /sys read-only instead (as rootless runc)
        mounts.push(mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        ));
    } else {
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ));
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ));
    }
    mounts.push(mount(
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ));
    mounts.push(mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ));
    for (dest, src) in [
        ("/etc/resolv.conf", &etc.resolv_conf),
        ("/etc/hosts", &etc.hosts),
        ("/etc/hostname", &etc.hostname),
    ] {
        mounts.push(mount(dest, "bind", src, &["rbind", "rprivate"]));
    }
    for m in &run.mounts {
        mounts.push(match &m.source {
            MountSource::Bind { path, readonly } => Mount {
                destination: m.destination.clone(),
                kind: "bind".to_string(),
                source: path.to_string_lossy().into_owned(),
                options: strings(&["rbind", "rprivate", if *readonly { "ro" } else { "rw" }]),
            },
            MountSource::Tmpfs { size } => {
                let mut options = strings(&["nosuid", "nodev", "strictatime", "mode=1777"]);
                if let Some(size) = size {
                    options.push(format!("size={size}"));
                }
                Mount {
                    destination: m.destination.clone(),
                    kind: "tmpfs".to_string(),
                    source: "tmpfs".to_string(),
                    options,
                }
            }
        });
    }

    // the primary group first, then the supplementary ones: a process that drops its primary
    // group with setgid() must stay in it (CVE-2023-25173, fixed so in Docker 23 and BuildKit)
    let mut additional_gids = vec![user.gid];
    additional_gids.extend(user.additional_gids.iter().filter(|g| **g != user.gid));
    if let Some(ns) = userns {
        if ns.gid_mappings.len() < 2 {
            // a single-id map is written with setgroups denied (the kernel's rule for an
            // unprivileged writer): no groups can be set at all
            additional_gids.clear();
        } else {
            additional_gids.retain(|g| ns.maps_gid(*g));
        }
    }

    Spec {
        oci_version: "1.0.2".to_string(),
        process: Process {
            terminal: false,
            user: User {
                uid: user.uid,
                gid: user.gid,
                additional_gids,
            },
            args: run.args.clone(),
            env: process_env(&run.env, &user.home),
            cwd: run.cwd.clone(),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
            },
            no_new_privileges: false,
        },
        root: Root {
            path: run.rootfs.to_string_lossy().into_owned(),
            readonly: false,
        },
        hostname,
        mounts,
        linux: Linux {
            uid_mappings: userns.map(|n| n.uid_mappings.clone()).unwrap_or_default(),
            gid_mappings: userns.map(|n| n.gid_mappings.clone()).unwrap_or_default(),
            namespaces: namespaces
                .into_iter()
                .map(|k| Namespace {
                    kind: k.to_string(),
                })
                .collect(),
            masked_paths: strings(MASKED_PATHS),
            readonly_paths: strings(READONLY_PATHS),
        },
    }
}

/// `/etc/hosts` as Docker's builder writes it.
pub fn hosts_file(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// `/etc/resolv.conf` for the container: the host's (`host` is its content, if readable); with
/// its own network namespace, loopback name servers of the host are unreachable, so they are
/// dropped, and Google's public servers used when none remain (Docker's rule).
pub fn resolv_conf(host: Option<&str>, network: Network) -> String {
    let host = host.unwrap_or("");
    let out: String = match network {
        Network::Host => host.to_string(),
        Network::None => host
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                !(w.next() == Some("nameserver")
                    && w.next()
                        .is_some_and(|a| a.starts_with("127.") || a == "::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    if out
        .lines()
        .any(|l| l.trim_start().starts_with("nameserver"))
    {
        out
    } else {
        format!("{out}nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    }
}

/// Parses `/etc/subuid`-style text: the first range of `name` or `uid`, as `(start, count)`.
pub fn subordinate_range(text: &str, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        if who != id && Some(who) != name {
            return None;
        }
        let start = f.next()?.trim().parse().ok()?;
        let count: u32 = f.next()?.trim().parse().ok()?;
        (count > 0).then_some((start, count))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn capeff(names: &[&str]) -> u64 {
        // bit numbers from linux/capability.h
        let bit = |n: &str| match n {
            "CAP_CHOWN" => 0,
            "CAP_DAC_OVERRIDE" => 1,
            "CAP_FOWNER" => 3,
            "CAP_FSETID" => 4,
            "CAP_KILL" => 5,
            "CAP_SETGID" => 6,
            "CAP_SETUID" => 7,
            "CAP_SETPCAP" => 8,
            "CAP_NET_BIND_SERVICE" => 10,
            "CAP_NET_RAW" => 13,
            "CAP_SYS_CHROOT" => 18,
            "CAP_MKNOD" => 27,
            "CAP_AUDIT_WRITE" => 29,
            "CAP_SETFCAP" => 31,
            other => panic!("{other}"),
        };
        names.iter().map(|n| 1u64 << bit(n)).sum()
    }

    #[test]
    fn capabilities_are_dockers() {
        assert_eq!(
            format!("{:016x}", capeff(DEFAULT_CAPABILITIES)),
            "00000000a80425fb"
        );
    }

    #[test]
    fn env_gets_path_and_home_only_when_missing() {
        let e = process_env(&["A=1".into()], "/root");
        assert_eq!(
            e,
            vec![
                "A=1".to_string(),
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/root".into()
            ]
        );
        let e = process_env(&["PATH=/x".into(), "HOME=/h".into()], "/root");
        assert_eq!(e, vec!["PATH=/x".to_string(), "HOME=/h".into()]);
    }

    #[test]
    fn resolv_conf_rules() {
        let host = "search lan\nnameserver 127.0.0.53\n";
        assert_eq!(resolv_conf(Some(host), Network::Host), host);
        assert_eq!(
            resolv_conf(Some(host), Network::None),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let real = "nameserver 10.0.0.1\n";
        assert_eq!(resolv_conf(Some(real), Network::None), real);
    }

    #[test]
    fn subordinate_ranges() {
        let t = "alice:100000:65536\n1001:200000:1000\nbob:5:0\n";
        assert_eq!(
            subordinate_range(t, Some("alice"), 1000),
            Some((100000, 65536))
        );
        assert_eq!(subordinate_range(t, None, 1001), Some((200000, 1000)));
        assert_eq!(subordinate_range(t, Some("bob"), 7), None);
    }

    #[test]
    fn namespaces_follow_network_and_userns() {
        let run = RunSpec::new("/r", vec!["true".into()]);
        let user = ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![5, 10],
            home: "/root".into(),
        };
        let etc = EtcFiles {
            hosts: "/b/hosts".into(),
            resolv_conf: "/b/resolv.conf".into(),
            hostname: "/b/hostname".into(),
        };
        let s = build(&run, &user, None, &etc);
        let kinds: Vec<_> = s.linux.namespaces.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds, ["pid", "ipc", "uts", "mount"]);
        assert_eq!(s.process.user.additional_gids, vec![0, 5, 10]);
        let ns = UserNamespace {
            uid_mappings: vec![IdMapping {
                container_id: 0,
                host_id: 1000,
                size: 1,
            }],
            gid_mappings: vec![IdMapping {
                container_id: 0,
                host_id: 1000,
                size: 6,
            }],
        };
        let run = RunSpec {
            network: Network::None,
            ..run
        };
        let s = build(&run, &user, Some(&ns), &etc);
        let kinds: Vec<_> = s.linux.namespaces.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds, ["pid", "ipc", "uts", "mount", "network", "user"]);
        assert!(s.process.user.additional_gids.is_empty());
        let sub = UserNamespace {
            gid_mappings: vec![
                IdMapping {
                    container_id: 0,
                    host_id: 1000,
                    size: 1,
                },
                IdMapping {
                    container_id: 1,
                    host_id: 100000,
                    size: 3,
                },
            ],
            ..ns.clone()
        };
        let s = build(&run, &user, Some(&sub), &etc);
        assert_eq!(s.process.user.additional_gids, vec![0]);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["linux"]["uidMappings"][0]["hostID"], 1000);
        assert_eq!(json["linux"]["uidMappings"][0]["containerID"], 0);
    }
}
