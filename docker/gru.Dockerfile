# gru: the one binary (agent and operator commands), static (musl). Built by
# scripts/build-images.sh from a context holding only the binary. The agent talks to the
# Docker engine through the socket mounted at /var/run/docker.sock, so the image runs as
# root (the socket is root:docker on the host):
#   docker run --network host -v /var/run/docker.sock:/var/run/docker.sock \
#     -e ETCD_ADDR=http://127.0.0.1:2379 gru join demo --name node1 --start
FROM scratch
LABEL org.gru.image=gru \
      org.opencontainers.image.title=gru \
      org.opencontainers.image.description="gru: decentralized autonomic manager for Docker containers"
COPY gru /gru
# SIGTERM makes the agent leave the cluster (lease revoked) and exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/gru"]
