FROM debian:bookworm
MAINTAINER Jane Doe <jane@example.com>
ENV LEGACY value with   spaces
ENV A=1 B="two words" C='single $quoted' D=with\ escape E=
ENV "QUOTED_KEY"=x
ARG ONE TWO=2 THREE="3 3"
LABEL org.opencontainers.image.title="hull test" version=1.0 "spaced key"=v
EXPOSE 80 443/tcp 53/udp ${PORT}
USER app:app
WORKDIR /srv/$APP
STOPSIGNAL SIGQUIT
VOLUME /var/lib/data
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ONBUILD COPY . /app/src
ONBUILD RUN make -C /app/src
ONBUILD   ENV X=1
