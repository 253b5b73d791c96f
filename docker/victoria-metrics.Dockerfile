# VictoriaMetrics from Debian's victoria-metrics package: the local stand-in for InfluxDB 2
# (it accepts the same /api/v2/write requests). Built by scripts/build-images.sh from a
# context whose rootfs/ holds the binary and the shared libraries `ldd` lists for it.
FROM scratch
LABEL org.gru.image=victoria-metrics \
      org.opencontainers.image.title=gru-victoria-metrics \
      org.opencontainers.image.description="VictoriaMetrics from Debian, the local time-series server of gru's compose cluster"
COPY rootfs/ /
EXPOSE 8428
ENTRYPOINT ["/usr/local/bin/victoria-metrics"]
CMD ["-storageDataPath=/data", "-httpListenAddr=:8428", "-retentionPeriod=100y"]
