FROM busybox
RUN <<EOF
echo $HOME
EOF
RUN <<-EOT bash
	if true; then
		echo tabbed
	fi
	EOT
RUN <<"EOF"
echo $NOT_EXPANDED
EOF
RUN <<'EOF' sh -x
echo single quoted
EOF
RUN cat > /etc/conf <<EOF && cat - <<-"TWO"
first=1
EOF
	second=2
	TWO
RUN 3<<FD cat /dev/fd/3
from fd three
FD
COPY <<X <<Y /dest/
Y
X
X
Y
COPY --chmod=0755 <<-EOF /usr/local/bin/hello
	#!/bin/sh
	echo hello
EOF
ADD <<EOF /etc/motd
welcome
EOF
ONBUILD RUN <<EOF
echo onbuild heredoc
EOF
RUN ["<<EOF"]
RUN echo "<<NOTHEREDOC" and cat<<NOTEITHER
