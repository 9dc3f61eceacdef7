#SYNTAX = docker/dockerfile:1
# check=skip=JSONArgsRecommended;error=true
# Escape=\
# this comment ends the directives
# escape=`
FROM busybox
RUN echo a \
    b
