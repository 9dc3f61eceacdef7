FROM busybox
    RUN apt-get update && \
# a comment inside the continuation
    # an indented comment too

        apt-get install -y \
          curl \   
          git
LABEL a=1 \
      b=2
RUN echo "escaped backslash at end" \\
RUN echo joined with the line above
RUN echo continuation at end of file \