"""From a ready model folder to an artifact: the packed env, the deterministic tarball, its file set
and sidecars, its verification and static audit. Imports core and model."""
