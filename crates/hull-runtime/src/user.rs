//! Resolving a `USER` string against the rootfs's `/etc/passwd` and `/etc/group`, with the rules
//! of Docker (moby/sys/user `GetExecUser`, which runc and BuildKit share).
//!
//! The files are image content, read through [`crate::rootfs::Root`] so that symlinks cannot
//! leave the rootfs, and with a size cap.

use std::path::Path;

use crate::error::RuntimeError;
use crate::rootfs::{ReadError, Root, read_small};

/// Largest `/etc/passwd` or `/etc/group` read (real ones are a few KiB).
const ACCOUNT_FILE_CAP: u64 = 16 * 1024 * 1024;

/// The largest uid or gid accepted (moby/sys/user `maxID`).
const MAX_ID: u32 = i32::MAX as u32;

/// Whom the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups of `/etc/group` listing the user's name as a member,
    /// only when no group was given explicitly (as Docker).
    pub additional_gids: Vec<u32>,
    /// The passwd entry's home directory, `/` without one.
    pub home: String,
}

#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next();
        let uid = f.next()?.trim().parse().ok()?;
        let gid = f.next().and_then(|g| g.trim().parse().ok()).unwrap_or(0);
        let _gecos = f.next();
        let home = f.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

fn parse_group(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next();
        let gid = f.next()?.trim().parse().ok()?;
        let members = f
            .next()
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Some(GroupEntry { name, gid, members })
    })
}

/// A `USER` field as a number: `None` when it is a name, `Some(Err(()))` when it is a number
/// Linux does not accept (negative or above `MAX_ID`).
fn parse_id(s: &str) -> Option<Result<u32, ()>> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.starts_with('-') && body.bytes().any(|b| b != b'0') {
        return Some(Err(()));
    }
    Some(body.parse::<u32>().ok().filter(|n| *n <= MAX_ID).ok_or(()))
}

fn read_account_file(
    root: &Root,
    rootfs: &Path,
    file: &'static str,
) -> Result<Option<String>, RuntimeError> {
    match read_small(root, file, ACCOUNT_FILE_CAP) {
        Ok(b) => Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned())),
        Err(ReadError::Io(source)) => Err(RuntimeError::AccountFile {
            rootfs: rootfs.to_path_buf(),
            file,
            source,
        }),
        Err(ReadError::NotRegular) => Err(RuntimeError::AccountFileInvalid {
            rootfs: rootfs.to_path_buf(),
            file,
            reason: "is not a regular file",
        }),
        Err(ReadError::TooLarge) => Err(RuntimeError::AccountFileInvalid {
            rootfs: rootfs.to_path_buf(),
            file,
            reason: "is larger than 16 MiB",
        }),
    }
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, …) against the account files
/// of `rootfs`, as Docker does for `USER`: a name must have a passwd entry, a number needs none;
/// an explicit group replaces the primary group and drops supplementary groups; without one, the
/// supplementary groups are those of `/etc/group` listing the user's name. `""` is root.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ExecUser, RuntimeError> {
    let root = Root::open(rootfs).map_err(RuntimeError::io("opening rootfs", rootfs))?;
    let passwd = read_account_file(&root, rootfs, "/etc/passwd")?;
    let (user_arg, group_arg) = match spec.split_once(':') {
        // "a:b:c": moby's parseLine keeps the first two fields
        Some((u, rest)) => (u, rest.split(':').next().unwrap_or("")),
        None => (spec, ""),
    };
    let uid_arg = parse_id(user_arg);
    let range_err = || RuntimeError::IdRange {
        spec: spec.to_string(),
    };
    let mut user = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".to_string(),
    };
    let mut matched_name = None;
    let found = passwd.as_deref().and_then(|text| {
        parse_passwd(text).find(|u| match (user_arg, uid_arg) {
            ("", _) => u.uid == 0,
            (_, Some(Ok(uid))) => u.uid == uid,
            (_, Some(Err(()))) => false,
            (name, None) => u.name == name,
        })
    });
    if let Some(u) = found {
        user.uid = u.uid;
        user.gid = u.gid;
        user.home = if u.home.is_empty() {
            "/".to_string()
        } else {
            u.home.to_string()
        };
        matched_name = Some(u.name.to_string());
    } else if !user_arg.is_empty() {
        match uid_arg {
            None => {
                return Err(RuntimeError::UserNotFound {
                    user: user_arg.to_string(),
                });
            }
            Some(Err(())) => return Err(range_err()),
            Some(Ok(uid)) => user.uid = uid,
        }
    }
    if group_arg.is_empty() && matched_name.is_none() {
        return Ok(user);
    }
    let group = read_account_file(&root, rootfs, "/etc/group")?;
    let groups = group.as_deref().unwrap_or("");
    if !group_arg.is_empty() {
        let gid_arg = parse_id(group_arg);
        let found = parse_group(groups).find(|g| match gid_arg {
            Some(Ok(gid)) => g.gid == gid,
            Some(Err(())) => false,
            None => g.name == group_arg,
        });
        user.gid = match (found, gid_arg) {
            (Some(g), _) => g.gid,
            (None, Some(Ok(gid))) => gid,
            (None, Some(Err(()))) => return Err(range_err()),
            (None, None) => {
                return Err(RuntimeError::GroupNotFound {
                    group: group_arg.to_string(),
                });
            }
        };
    } else if let Some(name) = matched_name {
        user.additional_gids = parse_group(groups)
            .filter(|g| g.members.contains(&name.as_str()))
            .map(|g| g.gid)
            .collect();
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rootfs(passwd: &str, group: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(d.path().join("etc/group"), group).unwrap();
        d
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbad:x:zz:1::/x:\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29: app \n";

    fn get(spec: &str) -> Result<ExecUser, RuntimeError> {
        let d = rootfs(PASSWD, GROUP);
        resolve_user(d.path(), spec)
    }

    #[test]
    fn docker_resolution_rules() {
        let root = get("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let app = get("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![10, 29]);
        let num = get("1000").unwrap();
        assert_eq!(num, app);
        let explicit = get("app:wheel").unwrap();
        assert_eq!((explicit.uid, explicit.gid), (1000, 10));
        assert!(explicit.additional_gids.is_empty());
        let ids = get("4242:4343").unwrap();
        assert_eq!((ids.uid, ids.gid, ids.home.as_str()), (4242, 4343, "/"));
        assert_eq!(get("4242").unwrap().gid, 0);
        assert_eq!(
            get("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            get("app:staff").unwrap_err().to_string(),
            "unable to find group staff: no matching entries in group file"
        );
        assert!(matches!(get("-1"), Err(RuntimeError::IdRange { .. })));
        assert!(matches!(
            get("4294967295"),
            Err(RuntimeError::IdRange { .. })
        ));
    }

    #[test]
    fn no_account_files_numeric_only() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(resolve_user(d.path(), "").unwrap().uid, 0);
        assert_eq!(resolve_user(d.path(), "5:6").unwrap().gid, 6);
        assert!(matches!(
            resolve_user(d.path(), "app"),
            Err(RuntimeError::UserNotFound { .. })
        ));
    }
}
