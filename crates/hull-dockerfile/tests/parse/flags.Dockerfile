FROM --platform=linux/arm64 alpine AS base
RUN --mount=type=bind,source=.,target=/src,rw --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true \
    --mount=type=ssh --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=cache,id=apk-$TARGETARCH,target=/var/cache/apk,mode=0755,uid=0,gid=0,ro \
    --network=none --security=insecure \
    make
RUN --mount=from=base,source=/etc/os-release,target=/os-release cat /os-release
RUN --network=host -- --not-a-flag
COPY --link --parents --exclude=*.md --exclude='test dir' --from=base / /rootfs/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --keep-git-dir=true --unpack=false --link=false https://example.com/a.tar.gz /a/
ADD --chown=app:app --chmod=644 local.tar.gz /srv/
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms --retries=3 CMD ["/healthcheck"]
HEALTHCHECK --interval=0s CMD true
HEALTHCHECK NONE
