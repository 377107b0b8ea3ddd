# syntax=docker/dockerfile:1.7
# Model bundles travel in their own image, never in a service image: a pod's init
# container copies one bundle from /bundles/<name>/ into an emptyDir (see deploy/k8s).
# Build after training/ produced the bundles into .cache/models:
#   docker build -f deploy/docker/models.Dockerfile -t tandem/models:<tag> .cache/models
# (the context is the bundle cache itself, so nothing else is sent.)
FROM busybox:1.37
COPY --chown=0:0 . /bundles/
RUN chmod -R a+rX /bundles
USER 1000:1000
