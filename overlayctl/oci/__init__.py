"""OCI interoperability: the blob store, image manifests and configs, image
archives (OCI layout and docker-archive tars) and the registry client."""
