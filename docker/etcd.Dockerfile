# etcd from Debian's etcd-server and etcd-client packages, for the local compose cluster
# where no registry can be reached. Built by scripts/build-images.sh from a context whose
# rootfs/ holds etcd, etcdctl and the shared libraries `ldd` lists for them (Debian links
# them dynamically against glibc). The paths match the upstream image's, so compose files
# run either with the same command.
FROM scratch
LABEL org.gru.image=etcd \
      org.opencontainers.image.title=gru-etcd \
      org.opencontainers.image.description="etcd and etcdctl from Debian, for gru's local compose cluster"
COPY rootfs/ /
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/etcd"]
CMD ["--data-dir=/data", "--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=http://127.0.0.1:2379"]
