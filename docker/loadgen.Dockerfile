# gru-loadgen: open-loop HTTP load for gru-workload. Built by scripts/build-images.sh from
# a context holding only the static (musl) binary. Arguments go after the image name:
#   docker run --rm --network host gru-loadgen --target 127.0.0.1:8080 --schedule 20:10s
FROM scratch
LABEL org.gru.image=loadgen \
      org.opencontainers.image.title=gru-loadgen \
      org.opencontainers.image.description="open-loop HTTP load generator for gru-workload"
COPY gru-loadgen /gru-loadgen
USER 65534:65534
ENTRYPOINT ["/gru-loadgen"]
