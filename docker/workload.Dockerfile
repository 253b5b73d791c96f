# gru-workload: the application gru manages in tests and the demo. Built by
# scripts/build-images.sh from a context holding only the static (musl) binary.
FROM scratch
LABEL org.gru.image=workload \
      org.opencontainers.image.title=gru-workload \
      org.opencontainers.image.description="HTTP service that burns CPU per request and reports gru:<service>:execution_time lines on stdout"
COPY gru-workload /gru-workload
# No /etc/passwd in scratch: a numeric user (nobody) is enough.
USER 65534:65534
ENV PORT=8080
EXPOSE 8080
# SIGTERM (docker stop) drains and exits 0; the binary handles it itself as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/gru-workload"]
