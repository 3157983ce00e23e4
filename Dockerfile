# gmemfs in a container (Debian bookworm).
#
#   docker build -t gmemfs .
#   docker run -d --name gmemfs --device /dev/fuse --cap-add SYS_ADMIN \
#       --security-opt apparmor:unconfined \
#       -v /srv/gmemfs:/mnt/gmemfs:rshared gmemfs
#
# The mount appears on the host at /srv/gmemfs (the host directory must be a
# shared mount: `mount --bind /srv/gmemfs /srv/gmemfs && mount --make-shared
# /srv/gmemfs`), and in a second container started with
# `-v /srv/gmemfs:/mnt/gmemfs:rslave`. See README.md "Containers".
FROM debian:bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        fuse3 libfuse3-dev pkg-config gcc libc6-dev \
        python3 python3-venv python3-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gmemfs
COPY . /opt/gmemfs
RUN python3 -m venv /opt/gmemfs/.venv \
 && /opt/gmemfs/.venv/bin/pip install --no-cache-dir -e '.[test]'
ENV PATH=/opt/gmemfs/.venv/bin:$PATH

RUN mkdir -p /mnt/gmemfs
# foreground, so `docker stop` (SIGTERM) unmounts cleanly
ENTRYPOINT ["gmemfs", "mount", "-f", "-o", "allow_other", "/mnt/gmemfs"]
