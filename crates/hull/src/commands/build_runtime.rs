//! The container runtime behind `hull build`'s RUN steps: hull-runtime (runc), with its state
//! under hull's runtime directory.

use std::path::Path;

use hull_build::step::RunStep;
use hull_build::{RunExecutor, RunMount};
use hull_dockerfile::NetworkMode;
use hull_runtime::{Mount, MountSource, Network, RunSpec};

pub struct Runtime {
    inner: Result<hull_runtime::Runtime, String>,
}

impl Runtime {
    pub fn new(_root: &Path) -> Runtime {
        Runtime {
            inner: hull_runtime::Runtime::new(hull_runtime::Runtime::default_state_dir())
                .map_err(|e| format!("RUN needs an OCI runtime: {e}")),
        }
    }
}

impl RunExecutor for Runtime {
    fn run(
        &self,
        rootfs: &Path,
        step: &RunStep,
        mounts: &[RunMount],
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<i32, String> {
        let rt = self.inner.as_ref().map_err(Clone::clone)?;
        let mut spec = RunSpec::new(rootfs, step.args.clone());
        spec.env = step.env.clone();
        spec.user = step.user.clone();
        spec.cwd = step.workdir.clone();
        spec.network = match step.network {
            NetworkMode::None => Network::None,
            NetworkMode::Default | NetworkMode::Host => Network::Host,
        };
        spec.mounts = mounts
            .iter()
            .map(|m| match m {
                RunMount::Bind {
                    target,
                    source,
                    readonly,
                } => Mount {
                    destination: target.clone(),
                    source: MountSource::Bind {
                        path: source.clone(),
                        readonly: *readonly,
                    },
                },
                RunMount::Tmpfs { target, size } => Mount {
                    destination: target.clone(),
                    source: MountSource::Tmpfs { size: *size },
                },
            })
            .collect();
        let status = rt
            .run(&spec, &mut |_, data| output(data))
            .map_err(|e| e.to_string())?;
        Ok(status.code())
    }

    fn resolve_owner(&self, rootfs: &Path, owner: &str) -> Result<(u32, u32), String> {
        let u = hull_runtime::resolve_user(rootfs, owner).map_err(|e| e.to_string())?;
        Ok((u.uid, u.gid))
    }

    fn owners(&self) -> Option<hull_layer::IdMap> {
        let ns = self.inner.as_ref().ok()?.user_namespace()?;
        let ranges = |m: &[hull_runtime::spec::IdMapping]| {
            m.iter()
                .map(|r| hull_layer::IdRange {
                    container: r.container_id,
                    host: r.host_id,
                    size: r.size,
                })
                .collect()
        };
        Some(hull_layer::IdMap {
            uids: ranges(&ns.uid_mappings),
            gids: ranges(&ns.gid_mappings),
        })
    }
}
