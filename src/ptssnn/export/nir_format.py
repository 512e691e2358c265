"""File names and the format tag of a NIR export directory, shared by writer and runner."""

MANIFEST = "manifest.json"
HOST_PARAMETERS = "host.safetensors"
FORMAT = "ptssnn-nir/2"
