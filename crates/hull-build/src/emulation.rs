//! Whether a RUN for another platform can execute here.
//!
//! A stage built for another architecture (`FROM --platform=linux/arm64`, `hull build
//! --platform`) runs its RUN steps through the kernel's `binfmt_misc` handlers (qemu-user), as
//! BuildKit does. Without one, the step would fail with the kernel's bare "exec format error";
//! the builder checks first and names what is missing.

use std::path::Path;

use hull_oci::Platform;

/// Where the kernel lists `binfmt_misc` handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The name qemu-user (and so its `binfmt_misc` handler, `qemu-<name>`) gives an architecture.
fn qemu_name(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        other => other,
    }
}

/// Ok when a process of `platform` can run on `host`: the same architecture, one the host CPU
/// runs natively (386 on amd64, arm on arm64), or one with an enabled `binfmt_misc` handler
/// in `binfmt_dir`. Otherwise the reason, for the step's error.
pub fn check(platform: &Platform, host: &Platform, binfmt_dir: &Path) -> Result<(), String> {
    if platform.os.is_empty() || platform.architecture.is_empty() {
        // A config that does not say: nothing to check against, try it.
        return Ok(());
    }
    if platform.os != host.os {
        return Err(format!(
            "a RUN for {platform} cannot execute on this {host} host"
        ));
    }
    let (arch, host_arch) = (platform.architecture.as_str(), host.architecture.as_str());
    if arch == host_arch
        || (host_arch == "amd64" && arch == "386")
        || (host_arch == "arm64" && arch == "arm")
    {
        return Ok(());
    }
    let qemu = qemu_name(arch);
    let enabled = std::fs::read_dir(binfmt_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name != "register" && name != "status" && name.contains(qemu)
        })
        .any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|s| s.lines().next() == Some("enabled"))
        });
    if enabled {
        Ok(())
    } else {
        Err(format!(
            "a RUN for {platform} cannot execute on this {host} host: no binfmt_misc handler \
             for {qemu} is enabled in {} (install qemu-user-static and binfmt-support)",
            binfmt_dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        let mut parts = s.split('/');
        let os = parts.next().unwrap_or_default();
        let arch = parts.next().unwrap_or_default();
        Platform::new(os, arch, parts.next())
    }

    #[test]
    fn native_and_emulated_platforms_run_and_others_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let amd64 = p("linux/amd64");
        assert!(check(&amd64, &amd64, dir.path()).is_ok());
        assert!(check(&p("linux/386"), &amd64, dir.path()).is_ok());
        assert!(check(&p("linux/arm/v7"), &p("linux/arm64"), dir.path()).is_ok());
        let e = check(&p("linux/arm64"), &amd64, dir.path()).unwrap_err();
        assert!(
            e.contains("linux/arm64") && e.contains("no binfmt_misc handler for aarch64"),
            "{e}"
        );
        assert!(check(&p("windows/amd64"), &amd64, dir.path()).is_err());
        assert!(check(&Platform::default(), &amd64, dir.path()).is_ok());

        // A disabled handler does not count; an enabled one does.
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            "disabled\ninterpreter /usr/bin/qemu-aarch64-static\n",
        )
        .unwrap();
        assert!(check(&p("linux/arm64"), &amd64, dir.path()).is_err());
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\n",
        )
        .unwrap();
        assert!(check(&p("linux/arm64"), &amd64, dir.path()).is_ok());
        assert!(check(&p("linux/riscv64"), &amd64, dir.path()).is_err());
    }
}
