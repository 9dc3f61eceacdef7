//! `RUN --mount=` specifications (BuildKit's `instructions/runmount.go`): a CSV list of
//! `key=value` fields, keys case-insensitive, validated per mount type.

use thiserror::Error;

use crate::lex::ExpandError;

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` flag.
///
/// Parsed when the Dockerfile is parsed, values as written: string fields may still hold
/// `$VAR` references, and a typed field (`type`, `mode`, `uid`, `gid`, `size`, `sharing`,
/// `readonly`, `required`) written with a `$` is left at its default. The builder calls
/// [`Mount::parse_expanded`] on [`Mount::raw`] with its expander to get the final values, as
/// BuildKit re-parses mounts at dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The flag's value as written (after `--mount=`).
    pub raw: String,
    pub kind: MountType,
    /// `target`, `dst`, `destination`.
    pub target: Option<String>,
    /// `source`, `src`.
    pub source: Option<String>,
    /// `from`: a stage or image to take `source` from.
    pub from: Option<String>,
    /// `id`: cache id, or secret/ssh id.
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    /// File mode, octal (cache, secret, ssh).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `readonly`/`ro` or `readwrite`/`rw`; defaults to read-only except for cache and tmpfs.
    pub readonly: bool,
    /// `required` (secret, ssh): fail when the secret is not provided.
    pub required: bool,
    /// `size` of a tmpfs, in bytes.
    pub size: Option<u64>,
    /// `env` (secret): expose the secret as this environment variable.
    pub env: Option<String>,
}

/// A `--mount` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MountError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(String),
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("unsupported mount type {0:?}")]
    UnsupportedType(String),
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType { key: String, kind: &'static str },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey { key: String, field: String },
    #[error("invalid value for {key}: {value}")]
    InvalidValue { key: String, value: String },
    #[error("unsupported sharing value {0:?}")]
    UnsupportedSharing(String),
    #[error("{key} not allowed for {kind:?} type mounts")]
    FileInfoNotAllowed {
        key: &'static str,
        kind: &'static str,
    },
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error("{0} mounts do not support 'from'")]
    FromNotSupported(&'static str),
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error(transparent)]
    Expand(#[from] ExpandError),
}

type Expander<'a> = &'a mut dyn FnMut(&str) -> Result<String, ExpandError>;

impl Mount {
    /// Parses a `--mount` value without expanding variables (see the type's docs).
    pub fn parse(raw: &str) -> Result<Mount, MountError> {
        parse_mount(raw, None)
    }

    /// Parses a `--mount` value, passing every field value through `expand` first.
    pub fn parse_expanded(
        raw: &str,
        expand: &mut dyn FnMut(&str) -> Result<String, ExpandError>,
    ) -> Result<Mount, MountError> {
        parse_mount(raw, Some(expand))
    }
}

fn parse_mount(raw: &str, mut expand: Option<Expander<'_>>) -> Result<Mount, MountError> {
    let fields = split_csv(raw)?;
    let mut m = Mount {
        raw: raw.to_owned(),
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        readonly: false,
        required: false,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(MountError::KeyNotForType {
                        key: "required".to_owned(),
                        kind: m.kind.as_str(),
                    });
                }
                _ => return Err(MountError::NotKeyValue(field.clone())),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let typed = matches!(
            key.as_str(),
            "type"
                | "readonly"
                | "ro"
                | "readwrite"
                | "rw"
                | "required"
                | "size"
                | "sharing"
                | "mode"
                | "uid"
                | "gid"
        );
        let value = match expand.as_mut() {
            Some(f) => f(value)?,
            None if key == "from" && value.find('$').is_some_and(|i| i + 1 != value.len()) => {
                return Err(MountError::FromVariable);
            }
            // Deferred to the builder's re-parse with its variables.
            None if typed && value.contains('$') => continue,
            None => value.to_owned(),
        };
        let invalid = || MountError::InvalidValue {
            key: key.clone(),
            value: value.clone(),
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(MountError::UnsupportedType(value)),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_go_bool(&value).ok_or_else(invalid)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_go_bool(&value).ok_or_else(invalid)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(MountError::KeyNotForType {
                        key,
                        kind: m.kind.as_str(),
                    });
                }
                m.required = parse_go_bool(&value).ok_or_else(invalid)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(MountError::KeyNotForType {
                        key,
                        kind: m.kind.as_str(),
                    });
                }
                m.size = Some(ram_in_bytes(&value).ok_or_else(invalid)?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(MountError::UnsupportedSharing(value)),
                })
            }
            "mode" => m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| invalid())?),
            "uid" => m.uid = Some(value.parse::<u32>().map_err(|_| invalid())?),
            "gid" => m.gid = Some(value.parse::<u32>().map_err(|_| invalid())?),
            "env" => m.env = Some(value),
            _ => {
                return Err(MountError::UnknownKey {
                    key,
                    field: field.clone(),
                });
            }
        }
    }

    let kind = m.kind.as_str();
    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (key, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfoNotAllowed { key, kind });
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(kind));
    }
    if matches!(m.kind, MountType::Secret | MountType::Ssh) && m.from.is_some() {
        return Err(MountError::FromNotSupported(kind));
    }
    Ok(m)
}

/// Splits one CSV record as Go's `encoding/csv` does for a single line: `,` separates fields,
/// a field that starts with `"` is quoted (`""` inside is a quote).
fn split_csv(raw: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(MountError::Csv(
                            "extraneous or missing \" in quoted-field".to_owned(),
                        ));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => {
                    return Err(MountError::Csv(
                        "extraneous or missing \" in quoted-field".to_owned(),
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(MountError::Csv("bare \" in non-quoted-field".to_owned()));
                    }
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: a number with an optional binary unit (`512`, `64m`, `1.5GiB`).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let num_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let number: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    let bytes = number * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_with_every_key() {
        let m = Mount::parse(
            "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000,gid=1001",
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.id.as_deref(), Some("pip"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert_eq!((m.uid, m.gid), (Some(1000), Some(1001)));
        assert!(!m.readonly);
    }

    #[test]
    fn bind_defaults_to_read_only_and_accepts_aliases() {
        let m = Mount::parse("target=/src,from=build,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        assert_eq!(m.from.as_deref(), Some("build"));
        assert_eq!(m.source.as_deref(), Some("/out"));
        let rw = Mount::parse("type=bind,dst=/x,src=y,rw").unwrap();
        assert!(!rw.readonly);
        assert_eq!(rw.target.as_deref(), Some("/x"));
        let ro = Mount::parse("type=cache,destination=/x,ro=true").unwrap();
        assert!(ro.readonly);
        let ro2 = Mount::parse("type=cache,destination=/x,readwrite=false").unwrap();
        assert!(ro2.readonly);
    }

    #[test]
    fn secret_and_ssh_mounts() {
        let m =
            Mount::parse("type=secret,id=npmrc,target=/root/.npmrc,required,env=TOKEN").unwrap();
        assert_eq!(m.kind, MountType::Secret);
        assert!(m.required && m.readonly);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let s = Mount::parse("TYPE=SSH,required=false,mode=0600").unwrap();
        assert_eq!(s.kind, MountType::Ssh);
        assert!(!s.required);
        assert_eq!(s.mode, Some(0o600));
    }

    #[test]
    fn tmpfs_size_units() {
        assert_eq!(
            Mount::parse("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert_eq!(
            Mount::parse("type=tmpfs,target=/t,size=1GiB").unwrap().size,
            Some(1 << 30)
        );
        assert_eq!(
            Mount::parse("type=tmpfs,target=/t,size=512").unwrap().size,
            Some(512)
        );
        assert!(Mount::parse("type=tmpfs,target=/t,size=lots").is_err());
    }

    #[test]
    fn invalid_mounts_are_refused_with_buildkit_messages() {
        let e = |s: &str| Mount::parse(s).unwrap_err().to_string();
        assert_eq!(
            e("type=volume,target=/x"),
            "unsupported mount type \"volume\""
        );
        assert_eq!(
            e("type=cache,target"),
            "invalid field 'target' must be a key=value pair"
        );
        assert_eq!(
            e("type=bind,required"),
            "unexpected key 'required' for mount type 'bind'"
        );
        assert_eq!(
            e("type=cache,size=1m"),
            "unexpected key 'size' for mount type 'cache'"
        );
        assert_eq!(e("type=cache,foo=bar"), "unexpected key 'foo' in 'foo=bar'");
        assert_eq!(
            e("type=cache,sharing=everyone"),
            "unsupported sharing value \"everyone\""
        );
        assert_eq!(
            e("type=bind,mode=0644"),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            e("type=tmpfs,uid=1"),
            "uid not allowed for \"tmpfs\" type mounts"
        );
        assert_eq!(
            e("type=bind,sharing=shared"),
            "invalid cache sharing set for bind mount"
        );
        assert_eq!(
            e("type=secret,from=x"),
            "secret mounts do not support 'from'"
        );
        assert_eq!(e("type=cache,uid=-1"), "invalid value for uid: -1");
        assert_eq!(e("type=cache,mode=9"), "invalid value for mode: 9");
        assert_eq!(
            e("from=$STAGE"),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert!(e("type=\"cache").starts_with("failed to parse csv mounts"));
    }

    #[test]
    fn quoted_csv_fields() {
        let m = Mount::parse("type=bind,\"target=/a,b\",source=x").unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
    }

    #[test]
    fn variables_are_kept_then_expanded_on_reparse() {
        let m = Mount::parse("type=cache,target=$HOME/.cache,uid=$UID,id=c-${ARCH}").unwrap();
        assert_eq!(m.target.as_deref(), Some("$HOME/.cache"));
        assert_eq!(m.uid, None);
        let vars = [("HOME", "/root"), ("UID", "42"), ("ARCH", "arm64")];
        let full = Mount::parse_expanded(&m.raw, &mut |w| crate::expand(w, &vars)).unwrap();
        assert_eq!(full.target.as_deref(), Some("/root/.cache"));
        assert_eq!(full.uid, Some(42));
        assert_eq!(full.id.as_deref(), Some("c-arm64"));
    }
}
