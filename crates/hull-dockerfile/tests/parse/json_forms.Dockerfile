FROM busybox
CMD ["echo", "exec form"]
CMD [ "spaced" , "out" ]
CMD ["with \"escapes\" and \u00e9"]
CMD [not json
CMD ["trailing"] garbage
CMD echo shell form
ENTRYPOINT []
RUN ["sh", "-c", "echo $HOME"]
VOLUME ["/data", "/logs"]
VOLUME /a /b
COPY ["src dir/", "/dst dir/"]
ADD ["https://example.com/x.tgz", "/opt/"]
HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]
HEALTHCHECK CMD curl -f http://localhost/ || exit 1
