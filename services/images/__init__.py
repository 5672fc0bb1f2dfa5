"""The image service: the official catalog (images/), restricted-Dockerfile builds with
buildah, versions, tags, sharing, root filesystems for the local runtime and registry
pushes for Kubernetes."""
