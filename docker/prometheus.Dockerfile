# Prometheus for docker/compose.yml, from Debian's `prometheus` package (the binary and the shared libraries `ldd`
# names), FROM scratch, staged by docker/build.sh --prometheus: no registry is needed. The configuration is
# mounted at /etc/prometheus/prometheus.yml; the database is in the volume at /prometheus, owned by nobody.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /prometheus/
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]
